"""Generator backends behind one protocol (see `base.py`)."""
from modelzoo.generators.base import (  # noqa: F401
    CandidateOutput,
    GenerationRequest,
    Generator,
    GeneratorError,
    Layout,
)
