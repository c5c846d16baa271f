import pytest

from medllm.eval.diagnosis import score, top1_calibration


def test_score_counts_top_k_per_source():
    rankings = [["a", "b"], ["x", "b"], [], ["c"]]
    golds = ["a", "b", "b", "d"]
    result = score(rankings, golds, ["hpo", "hpo", "common", "common"])
    assert result["all"]["n"] == 4
    assert result["all"]["top1"]["hits"] == 1
    assert result["all"]["top5"]["hits"] == 2
    assert result["hpo"]["top5"]["accuracy"] == 1.0
    assert result["common"]["top5"]["accuracy"] == 0.0
    assert result["all"]["answered"] == 0.75


def test_calibration_block_from_known_confidences():
    block = top1_calibration([0.9, 0.9, 0.3, 0.3], [True, False, False, False])
    assert block["n"] == 4 and block["top1"]["hits"] == 1
    # bins: 0.9 -> accuracy 0.5 (gap 0.4), 0.3 -> accuracy 0 (gap 0.3): ECE = (2*0.4 + 2*0.3) / 4
    assert block["ece"] == pytest.approx(0.35)
    assert [b["n"] for b in block["bins"]] == [2, 2]
