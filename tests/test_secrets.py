"""No secret reaches any file a run writes: config dumps (ours and Hydra's), run.json, logs, cache.

A real run through the CLI, as a user types it, against the test's OpenAI-compatible server: the
key is in the environment (generator.api_key_env) and a second one rides in the base_url's query
string, the case a local proxy or an Azure-style gateway invites.
"""

from __future__ import annotations

import shutil

import pytest

from conftest import ROOT, run_cli
from openai_server import KEY_ENV, TEST_KEY, server  # noqa: F401  (server is a fixture)

URL_SECRET = "qk-0f3b9d27c4a84e51b6d9e2a7c31f08d4"


def every_file(*roots):
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                yield path


@pytest.mark.slow
def test_no_key_in_any_file_of_the_run_or_the_cache(server, tmp_path):  # noqa: F811
    papers = tmp_path / "papers"
    papers.mkdir()
    for name in ("joss_adaptiveresonance.docx", "manubot_linear_models.docx", "manubot_pagerank_indices.docx"):
        shutil.copy(ROOT / "src/voicetune/demo_corpus" / name, papers / name)
    cache = tmp_path / "cache"
    url = f"{server.url}?api-key={URL_SECRET}&deployment=x"
    done = run_cli(["corpus=dir", f"corpus.path={papers}", "generator=local", f"generator.base_url='{url}'",
                    f"generator.api_key_env={KEY_ENV}", "generator.model=test-model",
                    "stages=[dataset]", f"cache_dir={cache}"], cwd=tmp_path, env={KEY_ENV: TEST_KEY})
    assert done.returncode == 0, done.stderr[-2000:]
    # The run really talked to the server, and the gateway got its query parameter on every request.
    assert server.requests and all(f"api-key={URL_SECRET}" in r["path"] for r in server.requests)
    run_dir = next((tmp_path / "outputs").rglob("run.json")).parent
    written = list(every_file(run_dir, cache))
    names = {p.relative_to(run_dir).as_posix() for p in every_file(run_dir)}
    assert {"config.yaml", "run.json", ".hydra/config.yaml", ".hydra/overrides.yaml", ".hydra/hydra.yaml"} <= names
    assert any(p.suffix == ".log" for p in every_file(run_dir))  # Hydra's job log is among them
    assert len(written) > 20
    for path in written:
        blob = path.read_bytes()
        assert URL_SECRET.encode() not in blob and TEST_KEY.encode() not in blob, path
    assert URL_SECRET not in done.stdout + done.stderr and TEST_KEY not in done.stdout + done.stderr
    # Still a usable record of what ran: the URL is there with its secret cut out.
    assert "api-key=<redacted>&deployment=x" in (run_dir / "config.yaml").read_text()
