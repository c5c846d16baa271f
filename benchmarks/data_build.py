"""Data build throughput: a PMC-Patients-shaped file streamed and curated, timed step by step.

Generates (seeded, cached under ``runs/bench/``) a ``PMC-Patients.json``-shaped
JSON array of ``--records`` patients (default 167,034, the real dataset's
size) of invented clinical text: summaries of log-normal length (median about
400 words, a tail to about 2,000 and a few past the 4,096-token limit),
titles, age lists, ``relevant_articles`` and ``similar_patients`` dicts, 1-3
patients per article (``PMID``, the split group), a few percent of exact
duplicates (case and spacing changed) and near duplicates (a word in ~150
changed), dates, phone numbers, emails and record numbers to scrub, lab values
that must stay (``BP 120/80``), some non-ASCII text to normalise, and a few
records quoting an MMLU medical question (to be decontaminated).

Then builds it as ``medllm`` does: ``iter_records("pmc_patients", ...)``
(ijson streaming) into ``curate()`` with the default :class:`~medllm.config.CurationConfig`,
the project's default tokenizer (SmolLM2-135M-Instruct, chat template) and
the MMLU medical texts as evaluation set. The curate steps are chained
generators, so each step's time is measured exclusively: the step functions of
``medllm.data.curate.pipeline`` are wrapped (for this run only) so that the time spent
pulling from a step's input is subtracted from the time spent pulling its
output. ``load`` is the loader's own time (file read, ijson, record building).
These are wall-clock seconds of the main thread. Where the length filter
tokenizes in a second thread (beside normalize, scrub and dedupe), ``length``
is only the time spent waiting for it, and ``tokenizer_calls_s`` the time the
tokenizer calls took in their thread; ``cpu_s`` is the process's CPU time
(all threads: the Rust tokenizer may use both cores).

Memory: the peak is the process's resident-set high-water mark
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``, everything: Python objects,
the tokenizer, numpy, ijson buffers), reported with the RSS just before the
build (imports, tokenizer and MMLU loaded) and sampled every 10,000 records
read, so growth with the stream shows. The curated records themselves are the
output and are held (they are the dataset); ``output_text_mb`` says how much
text they hold, for comparison.

    nice -n 19 .venv/bin/python benchmarks/data_build.py [--records 20000] [--seed 0]

Prints a table and writes ``runs/bench/data_build.json`` (``--out``). The
``digest`` fields hash the curated splits and the report (timings aside), so
two implementations can be checked to give identical outputs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import random
import resource
import sys
import time
from functools import wraps
from pathlib import Path

from medllm.config import DEFAULT_RECIPE

DEFAULT_RECORDS = 167_034
CACHE = Path("runs/bench")

# ----------------------------------------------------------------------------- invented clinical text

FIRST_SYMPTOMS = [
    "fever",
    "chest pain",
    "shortness of breath",
    "abdominal pain",
    "headache",
    "fatigue",
    "weight loss",
    "cough",
    "hemoptysis",
    "palpitations",
    "syncope",
    "dizziness",
    "nausea and vomiting",
    "diarrhea",
    "jaundice",
    "back pain",
    "joint pain",
    "a skin rash",
    "blurred vision",
    "weakness of the left arm",
    "seizures",
    "confusion",
    "dysphagia",
    "hematuria",
    "night sweats",
    "lower limb edema",
    "a painless neck mass",
    "progressive dyspnea on exertion",
    "melena",
    "epistaxis",
    "polyuria",
    "facial swelling",
    "urinary retention",
    "hoarseness",
    "pruritus",
    "a palpable breast lump",
]
CONDITIONS = [
    "hypertension",
    "type 2 diabetes mellitus",
    "chronic kidney disease",
    "atrial fibrillation",
    "hypothyroidism",
    "asthma",
    "chronic obstructive pulmonary disease",
    "rheumatoid arthritis",
    "systemic lupus erythematosus",
    "HIV infection",
    "hepatitis C",
    "coronary artery disease",
    "heart failure with reduced ejection fraction",
    "Crohn's disease",
    "ulcerative colitis",
    "multiple sclerosis",
    "sickle cell disease",
    "obesity",
    "major depressive disorder",
    "epilepsy",
    "psoriasis",
    "sarcoidosis",
    "a kidney transplant",
    "breast cancer treated with mastectomy",
    "prostate cancer",
    "Hashimoto thyroiditis",
    "alcohol use disorder",
    "a prior stroke",
    "gout",
    "polycystic ovary syndrome",
    "celiac disease",
    "myasthenia gravis",
]
DIAGNOSES = [
    "pulmonary embolism",
    "infective endocarditis",
    "Takotsubo cardiomyopathy",
    "aortic dissection",
    "acute myeloid leukemia",
    "diffuse large B-cell lymphoma",
    "tuberculous meningitis",
    "sarcoidosis",
    "granulomatosis with polyangiitis",
    "pheochromocytoma",
    "Cushing syndrome",
    "Addison disease",
    "hemophagocytic lymphohistiocytosis",
    "thrombotic thrombocytopenic purpura",
    "Guillain-Barré syndrome",
    "autoimmune encephalitis",
    "neurosarcoidosis",
    "IgG4-related disease",
    "Kikuchi disease",
    "Castleman disease",
    "Whipple disease",
    "Erdheim-Chester disease",
    "primary cardiac angiosarcoma",
    "spontaneous coronary artery dissection",
    "posterior reversible encephalopathy syndrome",
    "necrotizing fasciitis",
    "emphysematous pyelonephritis",
    "Lemierre syndrome",
    "mucormycosis",
    "disseminated histoplasmosis",
    "anti-NMDA receptor encephalitis",
    "calciphylaxis",
    "Wilson disease",
    "paraganglioma",
    "gastrointestinal stromal tumor",
    "solitary fibrous tumor",
    "desmoid tumor",
    "Langerhans cell histiocytosis",
    "Kawasaki disease",
    "adult-onset Still disease",
    "Behçet disease",
    "eosinophilic granulomatosis with polyangiitis",
    "Budd-Chiari syndrome",
    "May-Thurner syndrome",
    "superior mesenteric artery syndrome",
    "median arcuate ligament syndrome",
    "Boerhaave syndrome",
    "Ogilvie syndrome",
    "Fournier gangrene",
    "Ludwig angina",
    "myxedema coma",
    "thyroid storm",
    "neuroleptic malignant syndrome",
    "serotonin syndrome",
    "Wernicke encephalopathy",
    "central pontine myelinolysis",
    "Creutzfeldt-Jakob disease",
    "progressive multifocal leukoencephalopathy",
]
DRUGS = [
    "amoxicillin",
    "ceftriaxone",
    "vancomycin",
    "piperacillin-tazobactam",
    "meropenem",
    "doxycycline",
    "metronidazole",
    "azithromycin",
    "prednisolone",
    "methylprednisolone",
    "dexamethasone",
    "heparin",
    "enoxaparin",
    "warfarin",
    "apixaban",
    "aspirin",
    "clopidogrel",
    "atorvastatin",
    "metoprolol",
    "furosemide",
    "spironolactone",
    "lisinopril",
    "amlodipine",
    "insulin glargine",
    "metformin",
    "levothyroxine",
    "hydroxychloroquine",
    "methotrexate",
    "rituximab",
    "cyclophosphamide",
    "tacrolimus",
    "mycophenolate mofetil",
    "intravenous immunoglobulin",
    "acyclovir",
    "fluconazole",
    "amphotericin B",
    "levetiracetam",
    "haloperidol",
    "morphine",
    "paracetamol",
    "omeprazole",
    "octreotide",
    "imatinib",
    "tocilizumab",
    "infliximab",
]
LABS = [
    ("hemoglobin", "g/dL", 6.0, 16.0, 1),
    ("white blood cell count", "×10⁹/L", 2.0, 35.0, 1),
    ("platelet count", "×10⁹/L", 15, 650, 0),
    ("C-reactive protein", "mg/L", 1, 320, 0),
    ("serum creatinine", "mg/dL", 0.5, 9.0, 2),
    ("sodium", "mmol/L", 118, 152, 0),
    ("potassium", "mmol/L", 2.6, 6.8, 1),
    ("lactate dehydrogenase", "U/L", 140, 2400, 0),
    ("alanine aminotransferase", "U/L", 8, 1400, 0),
    ("total bilirubin", "mg/dL", 0.3, 18.0, 1),
    ("troponin I", "ng/mL", 0.01, 45.0, 2),
    ("D-dimer", "μg/mL", 0.2, 20.0, 1),
    ("ferritin", "ng/mL", 20, 60000, 0),
    ("procalcitonin", "ng/mL", 0.05, 80.0, 2),
    ("HbA1c", "%", 4.8, 14.0, 1),
    ("albumin", "g/dL", 1.5, 5.0, 1),
    ("erythrocyte sedimentation rate", "mm/h", 2, 140, 0),
    ("lactate", "mmol/L", 0.6, 12.0, 1),
    ("TSH", "mIU/L", 0.01, 80.0, 2),
    ("calcium", "mg/dL", 6.5, 15.8, 1),
]
ORGANS = [
    "right lower lobe",
    "left upper lobe",
    "liver",
    "spleen",
    "pancreatic head",
    "left kidney",
    "right adrenal gland",
    "mediastinum",
    "pericardium",
    "terminal ileum",
    "sigmoid colon",
    "gallbladder",
    "thyroid gland",
    "left frontal lobe",
    "cerebellum",
    "thoracic spine",
    "pelvis",
    "right femur",
    "left ventricle",
    "aortic root",
    "small bowel mesentery",
    "retroperitoneum",
    "left breast",
    "right parotid gland",
    "bladder wall",
    "uterus",
    "left ovary",
    "cervical lymph nodes",
    "pleural space",
    "orbit",
]
IMAGING = [
    "computed tomography",
    "magnetic resonance imaging",
    "ultrasonography",
    "a chest radiograph",
    "positron emission tomography",
    "transthoracic echocardiography",
    "transesophageal echocardiography",
    "contrast-enhanced CT",
    "CT angiography",
    "a bone scan",
    "abdominal ultrasound",
    "Doppler ultrasound",
]
FINDINGS = [
    "a well-defined hypodense lesion",
    "an irregular enhancing mass",
    "a multiloculated cystic lesion",
    "diffuse wall thickening",
    "a filling defect",
    "ground-glass opacities",
    "a pericardial effusion",
    "a large pleural effusion",
    "multiple enlarged lymph nodes",
    "a calcified nodule",
    "free fluid",
    "a vegetation",
    "an abscess with a gas-fluid level",
    "segmental wall motion abnormalities",
    "a thrombus",
    "signal hyperintensity on T2-weighted images",
    "osteolytic lesions",
    "a dissection flap",
    "bilateral consolidation",
    "hepatosplenomegaly",
    "a mural nodule",
    "ring-enhancing lesions",
]
PROCEDURES = [
    "a biopsy",
    "a laparoscopic resection",
    "an exploratory laparotomy",
    "percutaneous drainage",
    "an endoscopic ultrasound-guided fine-needle aspiration",
    "a bronchoscopy with lavage",
    "a lumbar puncture",
    "a bone marrow aspiration",
    "coronary angiography",
    "a thoracentesis",
    "a craniotomy",
    "an excisional lymph node biopsy",
    "a colonoscopy",
    "a pericardiocentesis",
    "a video-assisted thoracoscopic wedge resection",
    "an upper gastrointestinal endoscopy",
]
HISTOLOGY = [
    "non-caseating granulomas",
    "sheets of atypical lymphoid cells",
    "spindle cells with a storiform pattern",
    "necrotizing vasculitis",
    "foamy macrophages containing PAS-positive material",
    "Reed-Sternberg cells",
    "a dense lymphoplasmacytic infiltrate with storiform fibrosis",
    "broad aseptate hyphae",
    "well-differentiated adenocarcinoma",
    "chromaffin cells in nests",
    "amyloid deposits with apple-green birefringence",
    "caseating granulomas with acid-fast bacilli",
    "a mixed inflammatory infiltrate",
]
STAINS = [
    "CD20",
    "CD3",
    "CD30",
    "CD117",
    "DOG1",
    "S100",
    "chromogranin A",
    "synaptophysin",
    "Ki-67",
    "cytokeratin AE1/AE3",
    "IgG4",
    "CD68",
    "CD1a",
    "ALK",
    "TTF-1",
    "GATA3",
    "STAT6",
    "beta-catenin",
]
OUTCOMES = [
    "was discharged in good condition",
    "recovered fully",
    "remains symptom-free",
    "died of multi-organ failure despite maximal support",
    "was transferred to a rehabilitation unit",
    "had no recurrence",
    "developed a relapse that responded to a second course",
    "was referred for palliative care",
    "showed complete radiological resolution",
    "continues on maintenance therapy",
    "was lost to follow-up",
]
TIMES = [
    "two days",
    "three days",
    "one week",
    "ten days",
    "two weeks",
    "three weeks",
    "one month",
    "six weeks",
    "two months",
    "three months",
    "six months",
    "one year",
    "eighteen months",
    "two years",
]
PLACES = [
    "the emergency department",
    "our outpatient clinic",
    "a local hospital",
    "the intensive care unit",
    "the cardiology department",
    "our tertiary referral center",
    "the rheumatology clinic",
    "the department of neurology",
    "a rural health center",
    "the pediatric ward",
]
FAMILY = ["mother", "father", "sister", "brother", "daughter", "son", "maternal aunt", "paternal grandfather"]

BUGS = [
    "Staphylococcus aureus",
    "Streptococcus pneumoniae",
    "Escherichia coli",
    "Klebsiella pneumoniae",
    "Enterococcus faecalis",
    "Pseudomonas aeruginosa",
    "Streptococcus gallolyticus",
    "Candida albicans",
    "Fusobacterium necrophorum",
    "Listeria monocytogenes",
    "Haemophilus influenzae",
    "Bartonella henselae",
]
SEROLOGY = [
    "HIV, hepatitis B and hepatitis C",
    "antinuclear antibodies and ANCA",
    "Epstein-Barr virus and cytomegalovirus",
    "Brucella and Coxiella burnetii",
    "syphilis and Lyme disease",
    "anti-GBM antibodies",
    "SARS-CoV-2",
]
GENES = [
    "BRCA1",
    "BRCA2",
    "TP53",
    "MYH7",
    "LMNA",
    "CFTR",
    "SCN5A",
    "KIT",
    "PDGFRA",
    "RET",
    "VHL",
    "SDHB",
    "NF1",
    "FBN1",
    "COL3A1",
    "GLA",
    "HFE",
    "ATP7B",
    "JAK2",
    "MEFV",
]
ECG = [
    "ST-segment elevation in leads V1 to V4",
    "diffuse T-wave inversion",
    "a right bundle branch block",
    "low voltage",
    "a prolonged QT interval",
    "no acute ischemic changes",
    "an S1Q3T3 pattern",
]
URINE = [
    "3+ protein and red blood cell casts",
    "pyuria and bacteriuria",
    "no abnormalities",
    "glycosuria",
    "2+ blood without casts",
    "nephrotic-range proteinuria",
]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def _identifier(rng: random.Random) -> str:
    """A sentence carrying something the scrub step must replace."""
    kind = rng.random()
    if kind < 0.55:
        day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(1995, 2022)
        date = rng.choice(
            [
                f"{MONTHS[month - 1]} {day}, {year}",
                f"{month:02d}/{day:02d}/{year}",
                f"{year}-{month:02d}-{day:02d}",
                f"{day} {MONTHS[month - 1][:3]} {year}",
            ]
        )
        return f"{rng.choice(['The patient was admitted on', 'Surgery was performed on', 'She was seen on'])} {date}."
    if kind < 0.75:
        return (
            f"The family could be reached at ({rng.randint(201, 989)}) {rng.randint(200, 999)}-"
            f"{rng.randint(1000, 9999)}."
        )
    if kind < 0.87:
        return f"Correspondence: dr.{rng.choice(GENES).lower()}{rng.randint(1, 99)}@hospital-{rng.randint(1, 400)}.org."
    return f"Hospital MRN: {rng.randint(1000000, 99999999)}."


TERMS = [
    [t for t in terms if len(t.split()) <= 4]  # a longer fixed phrase next to a rare word would repeat
    for terms in (
        DIAGNOSES,
        DRUGS,
        ORGANS,
        CONDITIONS,
        FIRST_SYMPTOMS,
        FINDINGS,
        IMAGING,
        PROCEDURES,
        HISTOLOGY,
        BUGS,
        SEROLOGY,
        ECG,
        URINE,
        OUTCOMES,
        TIMES,
        PLACES,
        FAMILY,
    )
]


def _clinical(rng: random.Random) -> str:
    """A clinical phrase: a term (diagnosis, drug, finding ...) or a short measurement with its unit (no more
    than three fixed words in a row, see :class:`Vocabulary`)."""
    kind = rng.randrange(16)
    if kind < 8:
        return rng.choice(TERMS[rng.randrange(len(TERMS))])
    if kind == 8:
        return f"BP {rng.randint(70, 210)}/{rng.randint(40, 120)} mmHg"
    if kind == 9:
        return rng.choice(
            [f"HR {rng.randint(45, 160)} bpm", f"{rng.uniform(35.5, 40.8):.1f} °C", f"RR {rng.randint(10, 40)}/min"]
        )
    if kind == 10:
        name, unit, low, high, digits = rng.choice(LABS)
        return f"{name} {round(rng.uniform(low, high), digits):g} {unit}"
    if kind == 11:
        return f"{rng.choice(DRUGS)} {rng.choice([5, 10, 20, 25, 40, 50, 100, 250, 500, 1000])} mg"
    if kind == 12:
        return f"{rng.randint(4, 160)} × {rng.randint(4, 160)} mm"
    if kind == 13:
        return rng.choice([f"day {rng.randint(2, 40)}", f"SpO2 {rng.randint(78, 100)}%"])
    if kind == 14:
        return f"{rng.choice(GENES)} c.{rng.randint(30, 9000)}{rng.choice('ACGT')}>{rng.choice('ACGT')}"
    return f"{rng.choice(STAINS)}+, Ki-67 {rng.randint(1, 95)}%"


class Vocabulary:
    """Free-text words with Zipf frequencies: the tokenizer's whole-word tokens in merge order (a proxy for
    frequency rank), with clinical phrases mixed in.

    Real case reports are mostly unique text: an 8-word run shared by two
    unrelated records is rare, and the decontamination step relies on that.
    Sentence templates filled from short lists would repeat 8-word runs across
    a few records each, and the test-split check would then drop most of the
    training split; so the narrative is drawn word by word (about 5 bits of
    collision entropy a word) with short clinical phrases (at most four fixed
    words) in between.
    """

    def __init__(self, tokenizer_json: Path, size: int = 20_000, exponent: float = 1.05):
        vocab = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]["vocab"]
        ranked = sorted(vocab.items(), key=lambda item: item[1])
        self.words = [
            t[1:] for t, _ in ranked if t.startswith("\u0120") and t[1:].isalpha() and t[1:].islower() and len(t) >= 4
        ][:size]
        total, self.cum = 0.0, []
        for rank in range(1, len(self.words) + 1):
            total += rank**-exponent
            self.cum.append(total)

    def clause(self, rng: random.Random, low: int, high: int) -> list[str]:
        return rng.choices(self.words, cum_weights=self.cum, k=rng.randint(low, high))

    def sentence(self, rng: random.Random) -> str:
        tokens = self.clause(rng, 6, 24)
        for _ in range(rng.choice([0, 1, 1, 2, 2, 3])):
            tokens.insert(rng.randint(0, len(tokens)), _clinical(rng))
        text = " ".join(tokens)
        return text[:1].upper() + text[1:] + "."

    def title(self, rng: random.Random) -> str:
        """A case report title: free words around a diagnosis, now and then ending ": a case report"."""
        before, after = " ".join(self.clause(rng, 2, 5)), " ".join(self.clause(rng, 2, 5))
        dx = rng.choice(DIAGNOSES)
        form = rng.randrange(3)
        if form == 0:
            title = f"{before} {dx} {after}"
        elif form == 1:
            title = f"{dx} {before}"
        else:
            title = f"{before} {dx} {after}: a case report"
        return title[:1].upper() + title[1:]


def _summary(
    rng: random.Random, words: int, who: dict, mmlu: str | None, scrub: bool, unicode: bool, vocab: Vocabulary
) -> str:
    """About ``words`` words of case narrative in paragraphs: an opening with age and sex, then free text with
    clinical phrases, and whatever is planted (an identifier, an MMLU question)."""
    sentences = [
        f"A {who['age']}-year-old {who['sex']} "
        + " ".join(vocab.clause(rng, 6, 14))
        + f" {rng.choice(FIRST_SYMPTOMS)}."
    ]
    count = len(sentences[0].split())
    while count < words:
        sentence = vocab.sentence(rng)
        sentences.append(sentence)
        count += sentence.count(" ") + 1
    if scrub:
        sentences.insert(rng.randint(1, len(sentences)), _identifier(rng))
    if mmlu:
        sentences.insert(rng.randint(1, len(sentences)), f"The team discussed a board question: {mmlu}")
    if unicode:
        sentences[-1] = sentences[-1].replace(" ", "\u00a0", 2) + " \u200b"
    paragraphs, start = [], 0
    while start < len(sentences):
        end = start + rng.randint(3, 9)
        paragraphs.append(" ".join(sentences[start:end]))
        start = end
    return "\n".join(paragraphs)


def _near_copy(rng: random.Random, text: str, every: int, vocab: Vocabulary) -> str:
    """``text`` with about one word in ``every`` replaced."""
    tokens = text.split(" ")
    for _ in range(max(1, len(tokens) // every)):
        tokens[rng.randrange(len(tokens))] = rng.choice(vocab.words[:3000])
    return " ".join(tokens)


def generate(path: Path, n: int, seed: int, mmlu_texts: list[str], vocab: Vocabulary) -> dict:
    """Write ``n`` PMC-Patients-shaped records to ``path`` (a JSON array, streamed out); return what was planted."""
    rng = random.Random(seed)
    planted = {
        "exact_duplicates": 0,
        "near_duplicates_light": 0,
        "near_duplicates_heavy": 0,
        "with_identifier": 0,
        "with_mmlu_question": 0,
        "over_3000_words": 0,
        "words": [],
    }
    recent: list[tuple[str, str]] = []  # (summary, title) of earlier records: what duplicates copy
    pmid, left_in_article, title = 1_000_000, 0, ""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:  # a crash leaves the .tmp file, never a partial cache
        fh.write("[")
        for i in range(n):
            if left_in_article == 0:
                pmid += rng.randint(1, 60)
                left_in_article, k_in_article = rng.choices([1, 2, 3], [0.85, 0.11, 0.04])[0], 0
                title = ""
            left_in_article -= 1
            k_in_article += 1
            sex = rng.choice(["M", "F"])
            years = rng.choice([rng.randint(18, 95)] * 9 + [rng.randint(1, 17)])
            who = {"age": str(years), "sex": "man" if sex == "M" else "woman"}
            age = (
                [[float(years), "year"]]
                if years > 1 or rng.random() < 0.5
                else [[float(rng.randint(1, 11)), "month"], [float(rng.randint(0, 3)), "week"]]
            )
            draw, record_title = rng.random(), None
            if recent and draw < 0.015:  # exact duplicate: case and spacing changed, exact_key folds them
                summary, record_title = rng.choice(recent)
                summary = summary.upper() if rng.random() < 0.3 else summary.replace(" ", "  ")
                planted["exact_duplicates"] += 1
            elif recent and draw < 0.045:  # near duplicate: a word in ~150 changed (found), or 1 in 12 (not)
                source, _ = rng.choice(recent)
                light = draw < 0.035
                summary = _near_copy(rng, source, 150 if light else 12, vocab)
                planted["near_duplicates_light" if light else "near_duplicates_heavy"] += 1
            else:
                if rng.random() < 0.0005:
                    words = rng.randint(3200, 3800)  # past max_tokens
                    planted["over_3000_words"] += 1
                else:
                    words = min(2000, max(40, int(rng.lognormvariate(math.log(400), 0.5))))
                mmlu = rng.choice(mmlu_texts) if mmlu_texts and rng.random() < 0.001 else None
                scrub = rng.random() < 0.06
                summary = _summary(rng, words, who, mmlu, scrub, rng.random() < 0.02, vocab)
                planted["with_identifier"] += scrub
                planted["with_mmlu_question"] += mmlu is not None
            title = title or vocab.title(rng)  # one title an article
            record_title = record_title or title
            planted["words"].append(len(summary.split()))
            if len(recent) < 5000:
                recent.append((summary, record_title))
            elif rng.random() < 0.05:
                recent[rng.randrange(len(recent))] = (summary, record_title)
            similar = {
                f"{pmid - rng.randint(1, 90000)}-{rng.randint(1, 3)}": rng.choice([1, 2])
                for _ in range(rng.choice([0, 1, 2, 3, 5, 8]))
            }
            relevant = {str(pmid - rng.randint(1, 500000)): rng.choice([1, 2]) for _ in range(rng.randint(0, 12))}
            patient = {
                "patient_id": str(i),
                "patient_uid": f"{pmid}-{k_in_article}",
                "PMID": str(pmid),
                "file_path": f"comm/PMC{pmid % 1000:03d}xxxxxx/PMC{pmid + 5_000_000}.xml",
                "title": record_title,
                "patient": summary,
                "age": age,
                "gender": sex,
                "relevant_articles": relevant,
                "similar_patients": similar,
            }
            fh.write(("," if i else "") + "\n" + json.dumps(patient, ensure_ascii=False))
        fh.write("\n]\n")
    os.replace(tmp, path)
    words = sorted(planted.pop("words"))
    planted["summary_words"] = {
        "median": words[len(words) // 2],
        "p95": words[int(0.95 * len(words))],
        "p99": words[int(0.99 * len(words))],
        "max": words[-1],
        "mean": round(sum(words) / len(words), 1),
    }
    return planted


# ----------------------------------------------------------------------------- timing


class Meter:
    """An iterator that adds the time spent in its ``next()`` to ``seconds`` (and counts items)."""

    def __init__(self, iterable, on_item=None):
        self.it, self.seconds, self.items, self.on_item = iter(iterable), 0.0, 0, on_item

    def __iter__(self):
        return self

    def __next__(self):
        started = time.perf_counter()
        try:
            item = next(self.it)
        finally:
            self.seconds += time.perf_counter() - started
        self.items += 1
        if self.on_item:
            self.on_item(self.items)
        return item


def instrument(curate_module, timings: dict) -> None:
    """Wrap the step functions ``curate()`` calls so each step's own time lands in ``timings`` (for this run)."""
    generators = {
        "normalize_records": "normalize",
        "scrub_records": "scrub",
        "length_filter": "length",
        "dedupe": "dedupe",
        "group_split": "split",
    }

    def wrap_generator(fn, step):
        @wraps(fn)
        def wrapper(records, *args, **kwargs):
            inner = Meter(records)
            outer = Meter(fn(inner, *args, **kwargs))
            timings.setdefault("_meters", []).append((step, inner, outer))
            return outer

        return wrapper

    def wrap_call(fn, step, consumes_stream=False):
        @wraps(fn)
        def wrapper(first, *args, **kwargs):
            inner = Meter(first) if consumes_stream else first
            started = time.perf_counter()
            try:
                return fn(inner, *args, **kwargs)
            finally:
                spent = time.perf_counter() - started
                timings[step] = timings.get(step, 0.0) + spent - (inner.seconds if consumes_stream else 0.0)

        return wrapper

    for name, step in generators.items():
        setattr(curate_module, name, wrap_generator(getattr(curate_module, name), step))
    curate_module.cap_sources = wrap_call(curate_module.cap_sources, "cap", consumes_stream=True)
    curate_module.build_eval_index = wrap_call(curate_module.build_eval_index, "decontaminate (index)")
    curate_module.decontaminate = wrap_call(curate_module.decontaminate, "decontaminate")
    curate_module.weight_sources = wrap_call(curate_module.weight_sources, "weight")
    curate_module._length_summary = wrap_call(curate_module._length_summary, "report (length summary)")
    # the tokenizer itself: in the calling thread before, in a second thread (beside the other steps) after
    import medllm.data.curate.length as length_module

    original = length_module.token_lengths

    @wraps(original)
    def token_lengths(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            timings["tokenizer_calls_s"] = timings.get("tokenizer_calls_s", 0.0) + time.perf_counter() - started

    length_module.token_lengths = token_lengths


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=DEFAULT_RECORDS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default=DEFAULT_RECIPE, help="whose model's tokenizer to use")
    parser.add_argument("--out", type=Path, default=CACHE / "data_build.json")
    parser.add_argument("--generate-only", action="store_true", help="write the cached file and stop")
    args = parser.parse_args()

    started = time.perf_counter()
    import medllm.data.curate.pipeline as curate_module
    from medllm.config import load_config
    from medllm.data.benchmarks import load_benchmark
    from medllm.data.curate.decontaminate import benchmark_texts
    from medllm.data.loaders import iter_records
    from medllm.data.sources import LoadStats
    from medllm.io import atomic_write_json
    from medllm.models import load_tokenizer

    setup = {}
    t = time.perf_counter()
    tokenizer = load_tokenizer(load_config(args.config).model)
    setup["tokenizer"] = time.perf_counter() - t
    t = time.perf_counter()
    eval_texts = {"mmlu_medical": benchmark_texts(load_benchmark("mmlu_medical"))}
    setup["mmlu"] = time.perf_counter() - t

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"pmc_patients_{args.records}_seed{args.seed}.json"
    planted_path = path.with_suffix(".planted.json")
    if path.is_file() and planted_path.is_file():
        planted = json.loads(planted_path.read_text())
        setup["generate"] = None
        print(f"using cached {path}", flush=True)
    else:
        t = time.perf_counter()
        print(f"generating {args.records} records into {path} ...", flush=True)
        vocab = Vocabulary(Path(tokenizer.name_or_path) / "tokenizer.json")
        planted = generate(path, args.records, args.seed, eval_texts["mmlu_medical"], vocab)
        atomic_write_json(planted_path, planted)
        setup["generate"] = time.perf_counter() - t
    file_mb = path.stat().st_size / 2**20
    if args.generate_only:
        print(f"{path}: {file_mb:.0f} MB; planted {planted}")
        return

    timings: dict = {}
    instrument(curate_module, timings)
    rss_samples = []

    def sample(count: int) -> None:
        if count % 10_000 == 0:
            rss_samples.append([count, round(rss_mb(), 1)])

    rss_before, peak_before = rss_mb(), peak_rss_mb()
    load_avg_before = os.getloadavg()
    stats = LoadStats()
    build_started, cpu_started = time.perf_counter(), time.process_time()
    loader = Meter(iter_records("pmc_patients", path, stats), on_item=sample)
    splits, report = curate_module.curate(loader, None, tokenizer, eval_texts, {"pmc_patients": stats})
    total = time.perf_counter() - build_started
    cpu = time.process_time() - cpu_started
    peak_after, rss_after = peak_rss_mb(), rss_mb()

    steps = {"load": loader.seconds}
    for step, inner, outer in timings.pop("_meters"):
        steps[step] = outer.seconds - inner.seconds
    tokenizer_calls = timings.pop("tokenizer_calls_s", 0.0)
    steps.update(timings)
    steps["other (curate)"] = total - sum(steps.values())
    output_text = sum(
        len(m["content"]) + len(r["reference"])
        for rows in splits.values()
        for r in rows
        for m in r["messages"]
        if m["role"] != "system"
    )

    result = {
        "records": args.records,
        "file": str(path),
        "file_mb": round(file_mb, 1),
        "planted": planted,
        "total_s": round(total, 1),
        "cpu_s": round(cpu, 1),
        "records_per_s": round(args.records / total, 1),
        "steps_s": {k: round(v, 2) for k, v in steps.items()},
        "steps_share": {k: round(v / total, 3) for k, v in steps.items()},
        "tokenizer_calls_s": round(tokenizer_calls, 2),
        "memory": {
            "method": "resource.getrusage(RUSAGE_SELF).ru_maxrss: resident-set high-water mark of the process",
            "peak_rss_mb": round(peak_after, 1),
            "rss_before_build_mb": round(rss_before, 1),
            "peak_before_build_mb": round(peak_before, 1),
            "rss_after_build_mb": round(rss_after, 1),
            "peak_minus_rss_before_mb": round(peak_after - rss_before, 1),
            "output_text_mb": round(output_text / 2**20, 1),
            "rss_every_10000_records_read": rss_samples,
        },
        "counts": {
            "read": stats.read,
            "bad": stats.bad,
            "dropped": {step: block.get("dropped") for step, block in report["steps"].items() if "dropped" in block},
            "split_sizes": report["split_sizes"],
            "scrub": report["scrub"]["total"],
            "token_lengths": report["token_lengths"]["by_source"],
        },
        "digest": {
            "splits": digest(
                {s: [[r["id"], r["messages"], r["reference"]] for r in rows] for s, rows in splits.items()}
            ),
            "report": digest(report),
        },
        "setup_s": {k: (round(v, 1) if v is not None else "cached") for k, v in setup.items()},
        "wall_s_including_setup": round(time.perf_counter() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_before": [round(x, 2) for x in load_avg_before],
            "load_avg_after": [round(x, 2) for x in os.getloadavg()],
            "nice": os.nice(0),
            "python": platform.python_version(),
            "medllm_curate": curate_module.__file__,
        },
    }
    atomic_write_json(args.out, result)

    print(
        f"\nPMC-Patients-shaped build: {args.records:,} records ({file_mb:.0f} MB JSON), "
        f"load + curate with the default CurationConfig\n"
    )
    print("| step | seconds | share |\n| --- | ---: | ---: |")
    for step, seconds in steps.items():
        print(f"| {step} | {seconds:.1f} | {seconds / total:.0%} |")
    print(f"| **total** | **{total:.1f}** | cpu {cpu:.1f} s |")
    print(
        f"\ntime inside token_lengths (the tokenizer; part of `length` when it runs in the calling thread, "
        f"beside the other steps when it runs in a second thread): {tokenizer_calls:.1f} s"
    )
    print(f"\nthroughput: {args.records / total:,.0f} records/s")
    print(
        f"peak RSS (ru_maxrss): {peak_after:,.0f} MB (RSS before the build {rss_before:,.0f} MB; "
        f"curated text held {output_text / 2**20:,.0f} MB)"
    )
    print(f"RSS every 10,000 records read: {', '.join(f'{n // 1000}k {mb:.0f}' for n, mb in rss_samples)}")
    print(f"splits: {report['split_sizes']}; dropped: {result['counts']['dropped']}")
    print(f"digest: {result['digest']}\nwrote {args.out}", file=sys.stdout)


if __name__ == "__main__":
    main()
