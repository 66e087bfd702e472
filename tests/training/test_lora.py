"""LoRA modes: which modules train, EMoE + LoRA equals dense at k = N, routing follows LoRA."""

import pytest
import torch
from torch import nn

from emoe_cli.config.checks import validate_lora
from emoe_cli.errors import UserError
from emoe_cli.experiment.method import method_name
from emoe_cli.moe import attach_router_refresh, emoe_modules, emoefy
from emoe_cli.training.lora import apply_lora, apply_lora_config, lora_targets
from tests.conftest import tiny_bert, tiny_gpt2, tiny_llama, tiny_vit
from tests.helpers import compose_config

pytest.importorskip("peft")


def tuned_modules(model: nn.Module) -> set[str]:
    """Modules that own a trainable parameter: adapter hosts and saved (head) copies."""
    names = set()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            name = name.removeprefix("base_model.model.")
            for marker in (".lora_", ".modules_to_save", ".router"):
                if marker in name:
                    name = name.split(marker)[0] + (".router" if marker == ".router" else "")
                    break
            names.add(name)
    return names


def bert_block(i, *parts):
    return {f"bert.encoder.layer.{i}.{part}" for part in parts}


def test_standard_lora_adapts_attention_in_every_block():
    model = apply_lora(tiny_bert(), "standard")
    expected = {"classifier"}
    for i in range(3):
        expected |= bert_block(i, "attention.self.query", "attention.self.value")
    assert tuned_modules(model) == expected
    assert {n.split(".")[-1] for n in lora_targets(tiny_gpt2(), "standard")} == {"c_attn"}
    assert {n.split(".")[-1] for n in lora_targets(tiny_llama(), "standard")} == {
        "q_proj", "v_proj"}
    vit = tuned_modules(apply_lora(tiny_vit(), "standard"))
    # transformers 5 names ViT's attention projections q_proj/v_proj, 4.x query/value
    assert {n.split(".")[-1] for n in vit} in ({"classifier", "q_proj", "v_proj"},
                                               {"classifier", "query", "value"})
    assert len(vit) == 1 + 2 * 2  # both blocks of the tiny ViT


def test_moe_layers_lora_adapts_only_those_blocks_and_their_dense_ffn():
    model = apply_lora(tiny_bert(), "moe_layers", layers=[1])
    assert tuned_modules(model) == {"classifier"} | bert_block(
        1, "attention.self.query", "attention.self.value", "intermediate.dense",
        "output.dense")  # the FFN's W2, not the attention's output projection
    gpt2 = lora_targets(tiny_gpt2(), "moe_layers", layers="last_1")
    assert gpt2 == ["transformer.h.2.attn.c_attn", "transformer.h.2.mlp.c_fc",
                    "transformer.h.2.mlp.c_proj"]


def test_emoe_lora_adapts_the_experts_of_converted_blocks_only():
    model = emoefy(tiny_bert(), num_experts=4, top_k=2, layers=[2])
    model = apply_lora(model, "emoe")
    assert tuned_modules(model) == {"classifier"} | bert_block(
        2, "attention.self.query", "attention.self.value", "intermediate.w1", "intermediate.w2")
    llama = lora_targets(emoefy(tiny_llama(), num_experts=4, top_k=2, layers=[1]), "emoe")
    assert [n.split("mlp.")[-1] for n in llama if "mlp" in n] == ["w1", "w_up", "w2"]
    with pytest.raises(ValueError, match="needs converted layers"):
        lora_targets(tiny_bert(), "emoe")


def test_trained_routers_stay_trainable_under_lora():
    model = emoefy(tiny_bert(), num_experts=4, top_k=2, layers=[2], gate="learned")
    assert "bert.encoder.layer.2.intermediate.router" in tuned_modules(apply_lora(model, "emoe"))


@pytest.mark.parametrize("build", [tiny_bert, tiny_gpt2, tiny_llama])
def test_emoe_lora_at_k_equal_n_is_the_dense_model_before_training(build):
    dense = build()
    model = apply_lora(emoefy(build(), num_experts=4, top_k=4, layers="all"), "emoe").eval()
    ids = torch.randint(1, 100, (3, 9))
    with torch.no_grad():
        expected = dense(input_ids=ids).logits
        assert torch.allclose(model(input_ids=ids).logits, expected, atol=1e-5)


def test_avg_k_router_refreshes_from_the_lora_merged_keys():
    model = apply_lora(emoefy(tiny_bert(), num_experts=4, top_k=2, layers=[1]), "emoe")
    moe = next(emoe_modules(model))
    base_keys = moe.router.keys.clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    attach_router_refresh(optimizer, model)
    model.train()
    for _ in range(2):  # B starts at zero; the second step moves the keys
        loss = model(input_ids=torch.randint(1, 100, (4, 8)), labels=torch.tensor([0, 1, 0, 1]),
                     ).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    w1 = moe.w1
    merged = w1.base_layer.weight + w1.get_delta_weight("default")
    assert torch.equal(w1.base_layer.weight, w1.weight)  # the frozen base is untouched
    assert not torch.allclose(merged, w1.base_layer.weight)
    assert torch.allclose(moe.router.keys, merged.reshape(4, -1, merged.shape[-1]).mean(dim=1))
    assert not torch.allclose(moe.router.keys, base_keys)


@pytest.mark.parametrize("overrides, method", [
    (["lora=standard", "moe=dense"], "lora"),
    (["lora=moe_layers", "moe=dense"], "lora_moe_layers"),
    (["lora=emoe"], "emoe_lora"),
    (["lora=emoe", "gate=learned"], "emoe_learn_lora"),
    (["lora=standard"], "lora_emoe"),
    (["method=lora_emoe"], "lora_emoe"),
    (["method=lora_gmoe"], "lora_gmoe"),
    (["method=lora_emoe_learn"], "lora_emoe_learn"),
    (["method=lora_block"], "lora_block"),
    (["method=lora"], "lora"),
    (["lora=none"], "emoe"),
    (["lora=standard", "moe=dense", "lora.train_blocks=[44]", "model=gpt2-xl"], "lora_block"),
])
def test_method_names_say_lora(overrides, method):
    assert method_name(compose_config(overrides)) == method


def test_lora_presets_carry_the_paper_settings():
    lora = compose_config(["lora=moe_layers", "moe=dense", "model=gpt2-xl"]).lora
    assert (lora.r, lora.alpha, lora.dropout, list(lora.layers)) == (8, 16, 0.1, [44])


@pytest.mark.parametrize("overrides, message", [
    (["lora=emoe", "moe=dense"], "lora=emoe tunes the converted layers, but moe=dense"),
    (["lora=moe_layers"], "lora=moe_layers is the dense baseline, but moe is enabled"),
    (["lora=standard", "lora.r=0"], "lora.r=0 is invalid; valid: a positive integer"),
    (["lora=standard", "lora.dropout=1.5"], "lora.dropout=1.5 is invalid"),
    (["lora=standard", "lora.mode=big"], "lora.mode='big' is unknown; valid: standard"),
])
def test_bad_lora_settings_are_one_line_errors(overrides, message):
    with pytest.raises(UserError, match=message):
        validate_lora(compose_config(overrides))


def test_unknown_lora_preset_is_named_with_the_choices():
    from emoe_cli.config.checks import check_group_choices

    assert check_group_choices(["lora=big"]) == (
        "lora=big is unknown; valid: emoe, moe_layers, none, standard")


def test_layers_out_of_range_is_a_lora_user_error():
    cfg = compose_config(["lora=moe_layers", "moe=dense", "lora.layers=[7]"])
    with pytest.raises(UserError, match="lora: lora.layers entry 7 is out of range"):
        apply_lora_config(tiny_bert(), cfg.lora)
    cfg = compose_config(["lora=standard", "lora.train_blocks=last_x"])
    with pytest.raises(UserError, match="lora: lora.train_blocks='last_x' is not a rule"):
        apply_lora_config(tiny_bert(), cfg.lora)


def test_train_blocks_are_fully_tuned_next_to_the_adapters():
    """The original code's "LoRA + Block" baseline: every weight of the block trains."""
    model = apply_lora(tiny_bert(), "standard", train_blocks=[1])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    block1 = {n for n in (name for name, _ in model.named_parameters()) if ".layer.1." in n}
    assert block1 and block1 <= trainable
    others = {n.split(".lora_")[0] for n in trainable - block1 if "classifier" not in n}
    assert others == {f"base_model.model.bert.encoder.layer.{i}.attention.self.{m}"
                      for i in (0, 2) for m in ("query", "value")}


def test_merging_the_adapters_keeps_the_emoe_model_function():
    """A tuned EMoE + LoRA model can be folded back into plain EMoE layers (for saving)."""
    model = apply_lora(emoefy(tiny_bert(), num_experts=4, top_k=2, layers=[1]), "emoe").eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1)
    moe = next(emoe_modules(model))
    moe.refresh_router()
    ids = torch.randint(1, 100, (2, 7))
    with torch.no_grad():
        tuned = model(input_ids=ids).logits
        merged = model.merge_and_unload()
        assert type(next(emoe_modules(merged)).w1) is nn.Linear
        assert torch.allclose(merged(input_ids=ids).logits, tuned, atol=1e-5)


def test_lora_adapted_experts_keep_their_adapters_under_sparse_execution():
    """The sparse kernel reads raw weights, so LoRA-wrapped layers must compute masked."""
    torch.manual_seed(0)
    model = apply_lora(emoefy(tiny_bert(), num_experts=4, top_k=2, layers=[1],
                              execution="sparse"), "emoe").eval()
    layer = next(emoe_modules(model))
    with torch.no_grad():
        for module in (layer.w1, layer.w2):
            for weight in module.lora_B.values():
                weight.weight.normal_()  # a non-zero adapter, as after training
    ids = torch.randint(1, 100, (2, 7))
    adapted = model(input_ids=ids).logits
    layer.execution = "masked"
    assert torch.allclose(adapted, model(input_ids=ids).logits, atol=1e-6)
    with model.disable_adapter():
        assert not torch.allclose(adapted, model(input_ids=ids).logits, atol=1e-3)
