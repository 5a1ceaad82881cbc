"""voicetune entry point:  python run.py [group=option ...] [key=value ...]   (-m to sweep)."""

from pathlib import Path

import hydra

from voicetune.config import register_configs, register_resolvers
from voicetune.preflight import preflight

register_configs()
register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg) -> None:
    from voicetune.pipeline import main as run_pipeline

    run_pipeline(cfg)


if __name__ == "__main__":
    preflight(Path(__file__).resolve().parent / "conf")
    main()
