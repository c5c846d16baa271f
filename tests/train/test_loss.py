"""The answer-only loss: the model's own loss on padded and on packed batches."""

import pytest

from medllm.train.recipe import build_trainer


def test_answer_only_loss_is_the_models_own_loss_padded_and_packed(tiny_dataset):
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    trainer = build_trainer(tiny_dataset)
    examples = [trainer.train_dataset[i] for i in range(3)]
    padded = trainer._prepare_inputs(trainer.data_collator(examples))
    model = trainer.model.eval()
    with torch.no_grad():
        reference = model(**padded).loss.item()  # transformers' own: full logits, mean over answer tokens
        ours = trainer.compute_loss(model, dict(padded)).item()
        packed = DataCollatorForLanguageModeling(pad_token_id=trainer.processing_class.pad_token_id, padding_free=True)(
            examples
        )
        assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
        in_one_row = trainer.compute_loss(model, trainer._prepare_inputs(packed)).item()
    assert ours == pytest.approx(reference, rel=1e-5)
    assert in_one_row == pytest.approx(reference, rel=1e-4), "packed examples must not attend to each other"
    assert trainer._metrics["eval"]["mean_token_accuracy"], "token accuracy still logged"
