"""Generated gRPC API of SafePassage. Do not edit."""
