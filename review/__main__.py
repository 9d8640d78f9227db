"""`python -m review [flags]`: serves the review tool until SIGTERM or Ctrl-C.

Takes the service's flags and environment (server/config.py): the review section (--review-*),
and the fetch and decode sections, whose SSRF allow-list and limits apply to the images it shows."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from review.app import ReviewApp
from server.config import add_arguments, build_config


async def serve(app: ReviewApp) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await app.start()
        await stop.wait()
    finally:
        await app.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m review", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add_arguments(parser)
    config = build_config(parser.parse_args(argv))
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(ReviewApp(config)))


if __name__ == "__main__":
    main()
