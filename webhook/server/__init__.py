"""The HTTP entry points: the Flask app, its routes, the AdmissionReview and Gatekeeper shapes, gunicorn."""
