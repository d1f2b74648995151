"""Docker HEALTHCHECK: JupyterLab answers on /api/status (401/403 without a token also counts)."""

import os
import sys
import urllib.error
import urllib.request

token = os.environ.get("JUPYTER_TOKEN", "")
url = "http://127.0.0.1:8888/api/status" + (f"?token={token}" if token else "")
try:
    urllib.request.urlopen(url, timeout=4)
except urllib.error.HTTPError as error:
    sys.exit(0 if error.code in (401, 403) else 1)
except OSError:
    sys.exit(1)
