// The review list (engine/console/review.py): reject or restore a judgement in place, and keys to
// move through the list (j / k), open the replay (Enter), reject (x), restore (u).
import { flash, installNavKeys } from './common.js';
import { api, installKeys } from './lead.js';

installNavKeys();

const table = document.getElementById('judgement-table');
const rows = () => [...table.querySelectorAll('tr[data-judgement]')];
let selected = -1;

function select(i) {
  const all = rows();
  if (!all.length) return;
  selected = Math.max(0, Math.min(all.length - 1, i));
  all.forEach((tr, k) => tr.classList.toggle('selected', k === selected));
  all[selected].scrollIntoView({ block: 'nearest' });
}

async function review(tr, action) {
  const id = tr.dataset.judgement;
  try {
    const j = await api.request('POST', `judgements/${id}/${action}`, action === 'reject' ? { reason: '' } : {});
    tr.dataset.status = j.status;
    const state = tr.querySelector('.state');
    state.textContent = j.status;
    state.className = `state ${j.status === 'accepted' ? 'done' : 'failed'}`;
    const button = tr.querySelector('button');
    button.textContent = j.status === 'accepted' ? 'Reject' : 'Restore';
    button.className = j.status === 'accepted' ? 'danger reject' : 'secondary restore';
    flash(`Judgement ${id} ${j.status === 'accepted' ? 'restored' : 'rejected'}.`);
  } catch (err) { flash(err.message, { error: true }); }
}

table.addEventListener('click', (ev) => {
  const button = ev.target.closest('button');
  if (!button) return;
  review(button.closest('tr'), button.classList.contains('reject') ? 'reject' : 'restore');
});

installKeys({
  j: () => select(selected + 1), k: () => select(selected - 1),
  Enter: () => { const tr = rows()[selected]; if (tr) window.location.assign(tr.querySelector('.replay-link').href); },
  x: () => { const tr = rows()[selected]; if (tr?.dataset.status === 'accepted') review(tr, 'reject'); },
  u: () => { const tr = rows()[selected]; if (tr?.dataset.status === 'rejected') review(tr, 'restore'); },
});
