"""The reliability methods of tunesmith's Trainer, and the private transformers members they rely on."""

from transformers import Trainer, TrainingArguments

from tunesmith.training.guarded_trainer import (ReliableTrainerMixin, TunesmithTrainer, guard, guarded_class,
                                                missing_private_members)
from tunesmith.training.trainers import trainer_traits


def test_the_private_trainer_members_tunesmith_overrides_still_exist():
    # A transformers release that renames one of them must fail here, not switch a guard off silently.
    assert missing_private_members() == []


def test_guard_gives_a_users_trainer_the_reliability_methods(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2))
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    trainer = guard(Trainer(model=model, args=args), {"train.seed": 1})
    assert isinstance(trainer, ReliableTrainerMixin) and isinstance(trainer, Trainer)
    assert type(trainer) is guarded_class(Trainer)  # one class per trainer class, reused
    assert trainer.checkpoint_fingerprint == {"train.seed": 1} and trainer.nan_skipped_steps == 0
    assert "_save_checkpoint" not in vars(trainer) and "training_step" not in vars(trainer)  # methods, not patches
    own = TunesmithTrainer(model=model, args=args)
    assert guard(own, {}) is own and type(own) is TunesmithTrainer


def test_unlearning_methods_are_subclasses_and_traits_are_registry_metadata():
    from tunesmith.training.unlearning_methods import NPO, GradAscent, GradDiff

    assert issubclass(NPO, GradDiff) and issubclass(GradDiff, GradAscent) and issubclass(GradAscent, TunesmithTrainer)
    assert trainer_traits("grad_ascent").takes_retain and not trainer_traits("grad_ascent").needs_retain
    assert trainer_traits("grad_diff").needs_retain and not trainer_traits("grad_diff").one_example_per_row
    assert trainer_traits("npo").one_example_per_row and trainer_traits("npo").needs_retain
    assert not trainer_traits("sft").takes_retain and trainer_traits("sft").tasks == ("causal_lm",)
