"""The built-in image-to-3D model (shape latent + layout by conditional flow matching).

    from modelzoo.builtin import BuiltinGenerator
    gen = BuiltinGenerator.from_checkpoint("modelzoo/checkpoints/bootstrap.pt")
    candidates = gen.generate(GenerationRequest(image=rgb, mask=mask, seeds=[0, 1, 2], steps=4))
"""
from modelzoo.builtin.generator import BuiltinGenerator, seed_noise  # noqa: F401
from modelzoo.builtin.losses import (  # noqa: F401
    dpo_loss_from_errors,
    flow_dpo_loss,
    flow_errors,
    flow_matching_loss,
)
from modelzoo.builtin.model import BuiltinModel  # noqa: F401
