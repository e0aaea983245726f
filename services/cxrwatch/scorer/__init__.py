"""The scorer: inference requests in, risk scores out, through the model server."""
