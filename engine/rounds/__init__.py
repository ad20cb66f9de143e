"""Rounds of the loop (open: generate; close: export; a trained checkpoint joins the mix) and
training runs of the reference trainer. Services in `services.py` and `training.py`, reads in
`selectors.py`, thin views in `apis.py`, the Celery task in `tasks.py`."""
