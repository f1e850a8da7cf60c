"""Every one-line mutation of the reference manager (conformance/broken/mutations.py) is
caught by the checks of the requirement it breaks.

Kept cheap: each mutant runs only the checks of its requirement, four mutants at a time, with
enrollment tokens minted in this process (a `flock`ed file the token command pops) instead of
a Python start per token.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import time
from datetime import timedelta
from pathlib import Path

from test_conformance_manager import CLASSES, api_token_command, manager, operator_commands

from metersync_conformance.broken.mutations import MUTATIONS, stale
from metersync_conformance.cli import run_manager
from metersync_conformance.registry import Status, Verdict

AT_ONCE = 4
TOKENS = 24


def mint_tokens(data: Path, n: int) -> Path:
    """n fresh enrollment tokens in the manager's store; a file of them, one a line."""
    from metersync_manager import ingest
    from metersync_manager.cli import _open_store

    store = _open_store(argparse.Namespace(data_dir=data, database=None))
    now = ingest.utcnow()
    tokens = [ingest.new_token() for _ in range(n)]
    try:
        for t in tokens:
            store.add_token(ingest.hash_token(t), now + timedelta(hours=1), now, None)
    finally:
        store.close()
    out = data.parent / "tokens.txt"
    out.write_text("".join(t + "\n" for t in tokens))
    return out


def run_mutant(name: str, tmp: Path) -> tuple[str, list[Verdict], float]:
    mut = MUTATIONS[name]
    start = time.monotonic()
    tmp.mkdir(parents=True)
    with manager(tmp, f"mut:{name}") as (url, token_cmd):
        tokens = mint_tokens(tmp / "manager", TOKENS)
        pop = f"flock {tokens}.lock sh -c 'head -n1 {tokens}; sed -i 1d {tokens}'"
        revoke, reenroll = operator_commands(token_cmd)
        verdicts, _ = asyncio.run(
            run_manager(url, pop, CLASSES, requirements=(mut.catches,),
                        skip=("read_api_matches_openapi",), revoke_command=revoke,
                        reenroll_command=reenroll, api_token_command=api_token_command(token_cmd))
        )  # fmt: skip
    return name, verdicts, time.monotonic() - start


def test_every_mutation_is_caught_by_its_requirement(tmp_path: Path) -> None:
    names = sorted(MUTATIONS)
    assert len(names) >= 40
    with concurrent.futures.ThreadPoolExecutor(AT_ONCE) as pool:
        runs = list(pool.map(lambda n: run_mutant(n, tmp_path / n), names))
    missed, errors = {}, {}
    for name, verdicts, _secs in runs:
        want = MUTATIONS[name].catches
        got = {(v.requirement, v.status) for v in verdicts}
        if (want, Status.FAIL) not in got:
            missed[name] = sorted((r, s.value) for r, s in got if r == want)
        bad = [v.summary for v in verdicts if v.status is Status.ERROR]
        if bad:
            errors[name] = bad
    assert not missed, missed
    assert not errors, errors


def test_every_mutated_line_is_once_in_its_module() -> None:
    """A refactoring of the reference that moves a mutated line fails here, in a second, naming
    the mutant (not after minutes of manager runs)."""
    assert not stale(MUTATIONS), stale(MUTATIONS)
