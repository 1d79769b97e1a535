"""The dev cluster kit: a real Kubernetes control plane, a node agent standing in for the kubelet,
MinIO and helm, built from Go modules and cached (see devcluster/README.md)."""
