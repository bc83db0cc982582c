"""The floor for the webhook benchmark: a Flask app that only echoes the AdmissionReview uid.

Served by gunicorn exactly as Referee is (same workers, threads and TLS), so the difference between
the two is Referee's own work.
"""

from __future__ import annotations

import json

from flask import Flask, Response, request

app = Flask("echo")


@app.post("/validate")
def validate() -> Response:
    uid = json.loads(request.get_data())["request"]["uid"]
    body = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": True},
    }
    return Response(json.dumps(body), mimetype="application/json")
