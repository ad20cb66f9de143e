"""Projects: the list and a new project's form, one project's settings and members, the user's
API tokens. The pages are rendered here; their forms write through the JSON API (engine.apis:
projects, members, tokens), whose validation messages the page shows next to each field."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.urls import path

from engine import selectors
from engine.console.pages import console_error, console_render
from engine.errors import EngineError, Forbidden
from engine.models import ItemSelection, Project, RankingProtocol, Role

# The settings a lead sets, in the order the forms show them: (field, label, input type, hint).
SETTINGS_FIELDS = (
    ("candidates_per_item", "Candidates per object (N)", "number", "2 to 64; SAM 3D used 8."),
    ("quality_threshold", "Quality threshold (alpha)", "number", "1 to 5: a winner rated below it is a hard case."),
    ("overlap", "Overlap (k annotators per item)", "number", "1 to 10."),
    ("gold_rate", "Gold rate", "number", "Share of offered items that are gold, 0 to 1 (0.05 = 5%)."),
    ("lease_seconds", "Lease length (seconds)", "number", "30 to 86400: how long an annotator holds an item."),
    ("ranking_protocol", "Protocol", "select", "King of the hill: pairwise; full ranking: order all N."),
    ("layout_stage", "Layout stage", "checkbox", "Annotators adjust the winner's layout against the photo."),
    ("daily_cap", "Daily cap per annotator", "number", "Judgements per UTC day; empty for none."),
    ("sampling_steps", "Sampling steps", "number", "1 to 100 flow-matching steps when generating."),
    ("item_selection", "Item selection", "select", "Among items equally close to their overlap: the oldest first, "
                                                    "or those the pre-ranking ranker is least sure of."),
)
# On the project's own page only: chosen once there are candidates to look at.
JUDGED_FIELD = "judged_representation"


def _settings_rows(project: Project | None) -> list[dict]:
    defaults = Project()
    rows = []
    for name, label, kind, hint in SETTINGS_FIELDS:
        value = getattr(project or defaults, name)
        rows.append({"name": name, "label": label, "kind": kind, "hint": hint,
                     "value": "" if value is None else value,
                     "choices": {"ranking_protocol": RankingProtocol.choices,
                                 "item_selection": ItemSelection.choices}.get(name)})
    if project is not None:  # set once the project exists: what its annotators judge
        field = Project._meta.get_field(JUDGED_FIELD)
        rows.append({"name": JUDGED_FIELD, "label": "What annotators judge", "kind": "select",
                     "hint": str(field.help_text), "value": getattr(project, JUDGED_FIELD), "choices": field.choices})
    return rows


@login_required
def project_list(request):
    projects = list(selectors.projects_for_user(request.user))
    roles = selectors.roles_by_project(request.user, projects)
    try:
        selectors.project_create_check(request.user)
        may_create, create_refusal = True, ""
    except Forbidden as exc:
        may_create, create_refusal = False, exc.message
    return console_render(request, "console/projects.html", {
        "rows": [(p, sorted(roles.get(p.pk, ()))) for p in projects],
        "may_create": may_create, "create_refusal": create_refusal, "settings_rows": _settings_rows(None),
    }, area="projects", entry="src/console/projects.js")


@login_required
def project_page(request, slug: str):
    try:
        project = selectors.project_get_for_user(request.user, slug)
    except EngineError as exc:
        return console_error(request, exc, area="projects")
    is_lead = Role.LEAD in project.user_roles
    return console_render(request, "console/project.html", {
        "is_lead": is_lead, "readonly": not is_lead, "settings_rows": _settings_rows(project),
        "your_roles": sorted(project.user_roles), "roles": Role.choices,
        "members": selectors.members_by_user(project) if is_lead else None,
    }, area="projects", project=project, entry="src/console/projects.js")


@login_required
def tokens_page(request):
    return console_render(request, "console/tokens.html", {
        "tokens": request.user.api_tokens.order_by("-created_at"),
    }, area="tokens", entry="src/console/projects.js")


urlpatterns = [
    path("projects/", project_list, name="console-projects"),
    path("projects/<slug:slug>/", project_page, name="console-project"),
    path("tokens/", tokens_page, name="console-tokens"),
]
