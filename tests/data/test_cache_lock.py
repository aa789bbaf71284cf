"""Processes preparing the same data at once (the ranks of a multi-process run) take turns on a
file lock: one tokenizes and writes the cache, the other waits and reads it; an error in the data
stops both with that error, and neither waits for ever."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json, sys
    from tunesmith.api.data_entry import build_datasets
    from tunesmith.errors import DataError
    from tunesmith.models.loading import load_tokenizer

    tokenizer = load_tokenizer(sys.argv[2])
    try:
        bundle = build_datasets({"train": sys.argv[1], "format": "alpaca"}, tokenizer, seed=0)
    except DataError as err:
        print(json.dumps({"error": str(err)}))
        sys.exit(3)
    hit = any("loaded from the tokenized-data cache" in n for n in bundle.notes)
    print(json.dumps({"hit": hit, "rows": bundle.train.to_list()}))
""")


def run_two(tmp_path, data, tokenizer_dir):
    env = {**os.environ, "TUNESMITH_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(data), str(tokenizer_dir)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        outs.append((proc.returncode, json.loads(out.strip().splitlines()[-1]) if out.strip() else err))
    return outs


def test_one_process_prepares_and_the_other_reads_its_cache(tmp_path, smol_tokenizer_dir):
    data = tmp_path / "d.jsonl"
    # Enough rows that tokenizing takes longer than the gap between the two processes' starts.
    data.write_text("".join(json.dumps({"instruction": f"Say {i} " * 20, "output": str(i)}) + "\n"
                            for i in range(3000)))
    (rc1, one), (rc2, two) = run_two(tmp_path, data, smol_tokenizer_dir)
    assert (rc1, rc2) == (0, 0), (one, two)
    assert sorted([one["hit"], two["hit"]]) == [False, True]  # exactly one tokenized
    assert one["rows"] == two["rows"] and len(one["rows"]) == 3000


def test_an_error_in_the_data_stops_both_processes_with_it(tmp_path, smol_tokenizer_dir):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Say {i}", "output": str(i)}) + "\n" for i in range(50))
                    + '{"instruction": broken\n')
    outs = run_two(tmp_path, data, smol_tokenizer_dir)
    for rc, out in outs:
        assert rc == 3 and f"{data}:51: invalid JSON" in out["error"], out
