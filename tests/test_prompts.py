from medllm.knowledge import Disease, Finding
from medllm.prompts import DiseaseMatcher, build_messages, describe_candidate, format_answer, parse_differential


def _disease(id_, name, synonyms=()):
    return Disease(id=id_, name=name, source="hpo", findings=[Finding("x")], synonyms=list(synonyms))


def test_answer_round_trips_through_the_parser():
    answer = format_answer(["Marfan syndrome", "Homocystinuria"], "it fits.")
    assert parse_differential(answer) == ["Marfan syndrome", "Homocystinuria"]


def test_parser_falls_back_to_plain_lines():
    assert parse_differential("- Marfan syndrome\n- Homocystinuria\nRationale: x") == [
        "Marfan syndrome",
        "Homocystinuria",
    ]


def test_matcher_respects_subtype_numbers_and_synonyms():
    matcher = DiseaseMatcher(
        [
            _disease("A", "Epileptic encephalopathy 9"),
            _disease("B", "Epileptic encephalopathy 96"),
            _disease("C", "Epilepsy", ["Seizure Disorder"]),
        ]
    )
    assert matcher.match("Epileptic encephalopathy 96") == "B"
    assert matcher.match("epileptic encephalopathy, 9") == "A"
    assert matcher.match("Likely epileptic encephalopathy 96 (EEG)") == "B"
    assert matcher.match("seizure disorder") == "C"
    assert matcher.match("Epileptic encephalopathy") is None
    assert matcher.match("Something else entirely") is None


def test_candidate_evidence_lists_the_most_frequent_findings():
    disease = Disease(
        id="A",
        name="Asthma",
        source="common",
        findings=[Finding("cough", 0.5), Finding("wheezing", 0.9), Finding("fever", 0.1), Finding("dyspnea", 0.8)],
    )
    assert describe_candidate(disease) == "Asthma (typically wheezing, dyspnea)"
    assert describe_candidate(disease, 3) == "Asthma (typically wheezing, dyspnea, cough)"


def test_rank_keeps_first_k_distinct_diseases():
    matcher = DiseaseMatcher([_disease("A", "Alpha"), _disease("B", "Beta"), _disease("C", "Gamma")])
    answer = "1. Beta\n2. beta\n3. Unknown\n4. Alpha\n5. Gamma\nRationale: Alpha."
    assert matcher.rank(answer, 2) == ["B", "A"]


def test_closed_book_prompt_has_no_candidates():
    with_candidates = build_messages("A man with fever.", ["Flu", "Cold"])
    closed = build_messages("A man with fever.", None)
    assert "- Flu\n- Cold\n" in with_candidates[-1]["content"]
    assert "Candidate" not in closed[-1]["content"]
    assert with_candidates[0]["role"] == "system"


def test_rerank_prompt_lists_each_candidate_with_its_evidence():
    from medllm.prompts import CandidateEvidence, rerank_answer, rerank_messages

    candidates = [
        CandidateEvidence("Marfan syndrome", matched=("Arachnodactyly",), against=("Ectopia lentis",)),
        CandidateEvidence("Homocystinuria", unexplained=("Arachnodactyly",)),
    ]
    user = rerank_messages("A tall boy.", candidates)[1]["content"]
    assert "- Marfan syndrome: explains Arachnodactyly; but has Ectopia lentis, which the patient lacks\n" in user
    assert "- Homocystinuria: explains none of the findings; not Arachnodactyly\n" in user
    assert rerank_answer("Marfan syndrome").split("\n")[0] == "Marfan syndrome"
    many = CandidateEvidence("Marfan syndrome", matched=tuple(f"F{i}" for i in range(8)), unexplained=("G",))
    line = rerank_messages("A tall boy.", [many])[1]["content"]
    assert "- Marfan syndrome: explains F0, F1, F2, F3, F4 and 3 more; not G\n" in line  # the rest counted
