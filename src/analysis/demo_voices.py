"""SYNTHETIC open answers of the demo youth survey, coded by two simulated coders (Coda V2 export).

Called by :func:`analysis.demo.generate`; writes ``data/raw/demo/voices/`` and returns the
``voices`` entry of ``TRUTH.json``. Nothing here is about real people.

How the answers are made
------------------------
1. 85% of the youth-survey respondents (:data:`ANSWER_RATE`) answered the open question "How
   has COVID-19 changed your life?". Each theme is *truly* mentioned with the probability of
   :data:`THEME_PROBABILITY`: a base plus a planted difference for women or for persons with
   disabilities (WG-SS from the survey's own answers) — the theme x group pattern. A mentioned
   theme is expressed by one of its codes. Answers with no theme get ``no_theme``; 3% are not
   codable noise; 1% of respondents reply STOP (withdrawal).
2. Texts are template sentences per code in English (Uganda, half of Kenya), Swahili-style
   placeholders (the other half of Kenya) and French (Senegal). Some answers carry planted
   personal data — the respondent's own name, another person's name after a title, a phone
   number, a place below admin-1, an exact age — all listed in the truth so that tests can
   prove none reaches any output.
3. Two coders (``coder_a``, ``coder_b``) code every answer independently: a true code is missed
   with probability :data:`MISS_RATE`, a false code added with probability
   :data:`FALSE_CODE_RATE` (the planted disagreement). A lead coder's adjudication
   (``lead_coder``, the card's ``resolved_coder``) records the true codes.
4. 70% of respondents consented to quotation (:data:`CONSENT_RATE`), recorded in the responses
   file with the respondent's language and name (a personal column, used only for scrubbing).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import tables

VOICES_DIR = "voices"
FILES = {"messages": "voices/youth_open_answers_coda.json", "responses": "voices/youth_open_answers_consent.csv",
         "places": "voices/places_below_admin1.txt"}

ANSWER_RATE = 0.85
CONSENT_RATE = 0.70
NOT_CODABLE_RATE = 0.03
STOP_RATE = 0.01
MISS_RATE = 0.12
FALSE_CODE_RATE = 0.02
CODERS = ("coder_a", "coder_b")
LEAD_CODER = "lead_coder"

#: Theme -> (base probability, {characteristic: additive change}); characteristics: female, disability.
THEME_PROBABILITY = {
    "access_to_health": (0.20, {"disability": 0.25}),
    "income_and_livelihoods": (0.30, {"female": 0.15}),
    "food_insecurity": (0.20, {"disability": 0.10}),
    "education": (0.25, {}),
    "violence_abuse_discrimination": (0.08, {"female": 0.10}),
    "community_response": (0.15, {}),
}
#: Codes of each theme (codebook params/codebooks/demo_voices.yml).
THEME_CODES = {
    "access_to_health": ("clinic_unreachable", "medicine_shortage"),
    "income_and_livelihoods": ("lost_work", "market_closed"),
    "food_insecurity": ("not_enough_food",),
    "education": ("school_closed",),
    "violence_abuse_discrimination": ("violence_at_home", "discrimination"),
    "community_response": ("community_help",),
}
THEME_CODE_LIST = tuple(c for codes in THEME_CODES.values() for c in codes)

#: The sentence bank (``demo_voices_answers.json`` beside this module, written once for every
#: language): ``SENTENCES[language][code]`` two template sentences per code, plus the sentences
#: that carry planted personal data (``name``, ``other``, ``phone``, ``place``, ``age``).
ANSWERS_FILE = Path(__file__).with_name("demo_voices_answers.json")
_BANK = json.loads(ANSWERS_FILE.read_text(encoding="utf-8"))
SENTENCES: dict[str, dict] = _BANK["sentences"]
NOT_CODABLE: list[str] = _BANK["not_codable"]
#: Synthetic names and places below admin-1 planted in answers (all must be scrubbed).
FIRST_NAMES = ("Achieng", "Wanjiku", "Baraka", "Zawadi", "Okello", "Nakato", "Aminata", "Moussa", "Fatou",
               "Ibrahima", "Grace", "Brian")
LAST_NAMES = ("Otieno", "Kamau", "Mwangi", "Auma", "Ssempala", "Namubiru", "Diallo", "Ndiaye", "Sow", "Faye")
PLACES = {"KEN": ("Kibera", "Mathare", "Kawangware", "Mukuru"), "UGA": ("Bwaise", "Kisenyi", "Katanga", "Kalerwe"),
          "SEN": ("Pikine", "Guédiawaye", "Yeumbeul", "Thiaroye")}
DIAL = {"KEN": "+254 7{a:02d} {b:03d} {c:03d}", "UGA": "+256 77{a:01d} {b:03d} {c:03d}",
        "SEN": "+221 77 {b:03d} {a:02d} {c:02d}"}
#: The exact-age phrase inside each language's age sentence (what must not reach an output).
AGE_PHRASE = {"en": "{age} years old", "sw": "miaka {age}", "fr": "{age} ans"}
#: Shares of answers carrying each kind of planted personal data.
PLANT_RATES = {"name": 0.06, "other": 0.04, "phone": 0.04, "place": 0.06, "age": 0.04}


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    """A Kobo export column by its question name (headers carry the form's group prefix)."""
    for column in frame.columns:
        if str(column).rsplit("/", 1)[-1] == name:
            return frame[column]
    raise KeyError(name)


def theme_probability(theme: str, female: np.ndarray, disabled: np.ndarray) -> np.ndarray:
    base, effects = THEME_PROBABILITY[theme]
    return base + effects.get("female", 0.0) * female + effects.get("disability", 0.0) * disabled


def make_open_answers(youth: pd.DataFrame, rng: np.random.Generator):
    """Answers, true codes, the three coders' codings, consent and the truth, from the youth export.

    ``rng`` is the voices' own generator (:func:`analysis.demo.rng_for` of ``voices/youth``).
    """
    ids = _column(youth, "_uuid").astype(str).to_numpy()
    country = _column(youth, "country").astype(str).to_numpy()
    female = (_column(youth, "sex").astype(str) == "female").to_numpy().astype(float)
    wg = np.stack([_column(youth, f"wg{i}_{d}").astype(str).isin(["a_lot", "cannot"]).to_numpy()
                   for i, d in enumerate(("seeing", "hearing", "walking", "cognition", "selfcare", "communication"),
                                         start=1)])
    disabled = wg.any(axis=0).astype(float)
    answered = rng.random(len(ids)) < ANSWER_RATE
    idx = np.flatnonzero(answered)
    n = len(idx)
    kind = np.where(rng.random(n) < STOP_RATE, "stop", np.where(rng.random(n) < NOT_CODABLE_RATE, "not_codable", "coded"))
    true_codes: list[list[str]] = []
    for pos, i in enumerate(idx):
        if kind[pos] != "coded":
            true_codes.append([kind[pos]])
            continue
        codes = []
        for theme in THEME_PROBABILITY:
            if rng.random() < theme_probability(theme, female[i], disabled[i]):
                options = THEME_CODES[theme]
                codes.append(options[rng.integers(len(options))])
        true_codes.append(codes or ["no_theme"])
    language = np.array(["fr" if c == "SEN" else ("sw" if c == "KEN" and rng.random() < 0.5 else "en")
                         for c in country[idx]])
    names = [f"{FIRST_NAMES[rng.integers(len(FIRST_NAMES))]} {LAST_NAMES[rng.integers(len(LAST_NAMES))]}"
             for _ in range(n)]
    planted = {"names": set(), "phones": set(), "places": set(), "ages": set()}
    texts = []
    for pos in range(n):
        codes, lang, c = true_codes[pos], language[pos], country[idx[pos]]
        if codes == ["stop"]:
            texts.append("STOP")
            continue
        if codes == ["not_codable"]:
            texts.append(NOT_CODABLE[rng.integers(len(NOT_CODABLE))])
            continue
        parts = [SENTENCES[lang][code][rng.integers(2)] for code in codes]
        bank = SENTENCES[lang]
        if rng.random() < PLANT_RATES["name"]:
            parts.insert(0, bank["name"].format(name=names[pos]))
            planted["names"].update(names[pos].split())
        if rng.random() < PLANT_RATES["other"]:
            other = FIRST_NAMES[rng.integers(len(FIRST_NAMES))]
            parts.append(bank["other"].format(other=other))
            planted["names"].add(other)
        if rng.random() < PLANT_RATES["phone"]:
            phone = DIAL[c].format(a=int(rng.integers(10, 99)), b=int(rng.integers(100, 999)), c=int(rng.integers(10, 99)))
            parts.append(bank["phone"].format(phone=phone))
            planted["phones"].add(phone)
        if rng.random() < PLANT_RATES["place"]:
            place = PLACES[c][rng.integers(len(PLACES[c]))]
            parts.append(bank["place"].format(place=place))
            planted["places"].add(place)
        if rng.random() < PLANT_RATES["age"]:
            age = int(rng.integers(18, 35))
            parts.append(bank["age"].format(age=age))
            planted["ages"].add(AGE_PHRASE[lang].format(age=age))
        texts.append(" ".join(parts))
    # the two coders, independently; the lead coder's adjudication is the truth
    codings = {coder: [] for coder in (*CODERS, LEAD_CODER)}
    for pos in range(n):
        truth = true_codes[pos]
        codings[LEAD_CODER].append(list(truth))
        for coder in CODERS:
            if truth[0] in ("stop", "not_codable"):
                codings[coder].append(list(truth))
                continue
            draws = rng.random(len(THEME_CODE_LIST))
            applied = [code for code, u in zip(THEME_CODE_LIST, draws)
                       if (u >= MISS_RATE if code in truth else u < FALSE_CODE_RATE)]
            codings[coder].append(applied or ["no_theme"])
    consent = rng.random(n) < CONSENT_RATE
    frame = pd.DataFrame({"response_id": ids[idx], "country": country[idx], "female": female[idx],
                          "disabled": disabled[idx], "language": language, "name": names, "consent": consent,
                          "text": texts})
    return frame, true_codes, codings, planted


def coda_messages(frame: pd.DataFrame, codings: dict) -> list[dict]:
    """Coda V2 messages: every coder's labels of the ``theme`` scheme, newest first."""
    stamps = {"coder_a": "2021-06-01T09:00:00.000000+00:00", "coder_b": "2021-06-02T09:00:00.000000+00:00",
              LEAD_CODER: "2021-06-10T09:00:00.000000+00:00"}
    messages = []
    for pos, row in enumerate(frame.itertuples(index=False)):
        labels = []
        for coder in (LEAD_CODER, "coder_b", "coder_a"):
            for code in codings[coder][pos]:
                labels.append({"SchemeID": "Scheme-covid-impact", "CodeID": f"code-{code}",
                               "DateTimeUTC": stamps[coder], "Checked": True, "Confidence": 1.0,
                               "Origin": {"OriginID": coder, "Name": coder.replace("_", " "),
                                          "OriginType": "Manual"}})
        messages.append({"MessageID": row.response_id, "Text": row.text,
                         "CreationDateTimeUTC": "2021-05-20T12:00:00.000000+00:00", "Labels": labels,
                         "SequenceNumber": pos})
    return messages


def realised_truth(frame: pd.DataFrame, true_codes, codings) -> dict:
    """The planted pattern and what it gave: theme probabilities, counts and the disagreement."""
    coded = [i for i, codes in enumerate(true_codes) if codes[0] not in ("stop", "not_codable")]
    expected, observed = {}, {}
    a, b = codings["coder_a"], codings["coder_b"]
    for code in THEME_CODE_LIST:
        present = np.array([code in true_codes[i] for i in coded])
        prevalence = float(present.mean()) if coded else 0.0
        agree_true = (1 - MISS_RATE) ** 2 + MISS_RATE**2
        agree_false = (1 - FALSE_CODE_RATE) ** 2 + FALSE_CODE_RATE**2
        expected[code] = round(1 - (prevalence * agree_true + (1 - prevalence) * agree_false), 6)
        observed[code] = round(float(np.mean([(code in a[i]) != (code in b[i]) for i in coded])), 6)
    return {
        "respondents_answering": len(frame),
        "withdrawn": int(sum(codes == ["stop"] for codes in true_codes)),
        "withdrawn_by_country": {c: int(sum(codes == ["stop"] for codes, cc in zip(true_codes, frame["country"]) if cc == c))
                                 for c in sorted(frame["country"].unique())},
        "not_codable": int(sum(codes == ["not_codable"] for codes in true_codes)),
        "expected_disagreement_rate": expected,
        "realised_disagreement_rate": observed,
    }


def generate(out: Path, rng: np.random.Generator, youth: pd.DataFrame) -> dict:
    """Write the demo's coded open answers into ``out/voices/``; return TRUTH.json's ``voices``.

    ``rng`` draws every answer and coding (the demo passes ``rng_for(seed, "voices/youth")``).
    """
    frame, true_codes, codings, planted = make_open_answers(youth, rng)
    folder = Path(out) / VOICES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (Path(out) / FILES["messages"]).write_text(json.dumps(coda_messages(frame, codings), ensure_ascii=False, indent=0)
                                               + "\n", encoding="utf-8")
    responses = pd.DataFrame({
        "_uuid": frame["response_id"], "language": frame["language"],
        "quote_consent": np.where(frame["consent"], "yes", "no"), "respondent_name": frame["name"],
        "note": "SYNTHETIC demo data (analysis.demo_voices): no real person",
    })
    tables.write_text_csv(responses, Path(out) / FILES["responses"])
    places = sorted({p for values in PLACES.values() for p in values})
    (Path(out) / FILES["places"]).write_text("# SYNTHETIC demo gazetteer: places below admin-1 to scrub\n"
                                             + "\n".join(places) + "\n", encoding="utf-8")
    return {
        "files": FILES,
        "source_card": "params/sources/demo_voices.yml",
        "survey": "demo_youth",
        "how_to_read": ("theme_probability: P(a respondent's answer truly mentions the theme) = base + the "
                        "planted change for women (female) or persons with disabilities (WG-SS); the lead "
                        "coder's codes are the truth; coders a and b miss a true code with miss_rate and add a "
                        "false one with false_code_rate; expected_disagreement_rate per code follows from "
                        "the realised prevalence; planted_personal_data must never reach an output"),
        "answer_rate": ANSWER_RATE, "consent_rate": CONSENT_RATE, "stop_rate": STOP_RATE,
        "not_codable_rate": NOT_CODABLE_RATE, "miss_rate": MISS_RATE, "false_code_rate": FALSE_CODE_RATE,
        "coders": list(CODERS), "resolved_coder": LEAD_CODER,
        "theme_probability": {t: {"base": b, **e} for t, (b, e) in THEME_PROBABILITY.items()},
        "theme_codes": {t: list(c) for t, c in THEME_CODES.items()},
        **realised_truth(frame, true_codes, codings),
        "planted_personal_data": {k: sorted(v) for k, v in planted.items()},
    }
