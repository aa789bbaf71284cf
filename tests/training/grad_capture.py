"""A callback the training tests share: the gradients of the first optimizer step."""

from transformers import TrainerCallback


class GradCapture(TrainerCallback):
    """Copies every trainable gradient right before the (first) optimizer step."""

    def __init__(self):
        self.grads = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.grads is None:
            self.grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
