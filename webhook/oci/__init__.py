"""The OCI model, pure: image references and their canonical names, descriptors and manifests, and
patterns over references. No I/O."""
