"""The calls of one ``scaleset-listen --once`` run with an empty queue, made with bare requests.

The baseline of ``bench.startup``: the same five requests, with the same headers and bodies, that
the fake logs for our run (registration token, admin token, create session, one empty poll,
delete session), parsed with ``json``. Run as ``python -m bench._cron_bare URL TOKEN SCALE_SET_ID``.
"""

from __future__ import annotations

import json
import sys
from urllib.parse import urlsplit

import requests


def main(config_url: str, token: str, scale_set_id: int) -> None:
    http = requests.Session()
    http.trust_env = False
    parts = urlsplit(config_url)
    api = f"{parts.scheme}://{parts.netloc}/api/v3"
    agent = json.dumps({"system": "scaleset-listen", "version": "0.1.0", "commit_sha": "NA",
                        "scale_set_id": scale_set_id, "subsystem": "listener", "build_version": "0.1.0",
                        "build_commit_sha": "0.1.0", "kind": "scaleset"}, separators=(",", ":"))
    github = {"User-Agent": agent, "Accept": "application/vnd.github+json"}
    response = http.post(f"{api}/orgs/{parts.path.strip('/')}/actions/runners/registration-token",
                         headers={**github, "Authorization": f"Bearer {token}",
                                  "Content-Type": "application/vnd.github.v3+json"}, timeout=(5.05, 30))
    response.raise_for_status()
    registration = response.json()["token"]
    response = http.post(f"{api}/actions/runner-registration", timeout=(5.05, 30),
                         data=json.dumps({"url": config_url, "runner_event": "register"},
                                         separators=(",", ":")) + "\n",
                         headers={**github, "Authorization": f"RemoteAuth {registration}",
                                  "Content-Type": "application/json"})
    response.raise_for_status()
    admin = response.json()
    service, bearer = admin["url"].rstrip("/") + "/", admin["token"]
    actions = {"User-Agent": agent, "Content-Type": "application/json", "Authorization": f"Bearer {bearer}"}
    sessions = f"{service}_apis/runtime/runnerscalesets/{scale_set_id}/sessions"
    response = http.post(sessions, params={"api-version": "6.0-preview"}, headers=actions, timeout=(5.05, 30),
                         data=json.dumps({"sessionId": "00000000-0000-0000-0000-000000000000", "ownerName": "vm"},
                                         separators=(",", ":")))
    response.raise_for_status()
    session = response.json()
    response = http.get(session["messageQueueUrl"], timeout=(5.05, 75),
                        headers={"User-Agent": agent, "Accept": "application/json; api-version=6.0-preview",
                                 "Authorization": f"Bearer {session['messageQueueAccessToken']}",
                                 "X-ScaleSetMaxCapacity": "10"})
    response.raise_for_status()
    if response.status_code == 200:
        json.loads(response.json()["body"])
    http.delete(f"{sessions}/{session['sessionId']}", params={"api-version": "6.0-preview"}, headers=actions,
                timeout=(5.05, 30)).raise_for_status()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
