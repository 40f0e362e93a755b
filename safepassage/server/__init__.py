"""The server side of SafePassage: configuration, keys, TLS and the thin gRPC servicers."""
