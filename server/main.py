"""`python -m server.main [flags]`: builds the config tree and runs the service until SIGTERM."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    # Imports live here, not at module level: worker processes are spawned with this module as
    # their __main__ and re-import it, and they need none of gRPC, asyncio or aiohttp.
    import asyncio
    import logging

    from server.app import Service, run_until_signalled
    from server.config import add_arguments, build_config

    parser = argparse.ArgumentParser(
        prog="python -m server.main", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add_arguments(parser)
    config = build_config(parser.parse_args(argv))
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_until_signalled(Service(config)))


if __name__ == "__main__":
    main()
