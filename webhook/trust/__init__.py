"""Trust material on disk (trust policy, trust store) and revocation evidence fetched for the pure core."""
