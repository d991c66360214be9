"""A Cog model server (coglet) started as `python -m cog.server.http` starts it, except that the output upload
URL comes from the environment (`COG_UPLOAD_URL`): a command line is readable by every local user (`ps`), and
the upload URL is a capability. Run as a script, by path, so that model code never imports the gateway."""

from __future__ import annotations

import argparse
import os

UPLOAD_URL_ENV = "COG_UPLOAD_URL"


def main() -> None:
    # Imported here: the gateway reads UPLOAD_URL_ENV from this module and need not have coglet installed.
    import coglet  # type: ignore[import-not-found,unused-ignore]

    parser = argparse.ArgumentParser(description="Cog HTTP server, upload URL from the environment")
    parser.add_argument("--host", default="0.0.0.0")
    args = parser.parse_args()
    coglet.server.serve(
        predictor_ref=os.environ["COG_PREDICT_TYPE_STUB"],
        host=args.host,
        port=int(os.environ.get("PORT", "5000")),
        await_explicit_shutdown=False,
        is_train=False,
        upload_url=os.environ.pop(UPLOAD_URL_ENV, "") or None,
    )


if __name__ == "__main__":
    main()
