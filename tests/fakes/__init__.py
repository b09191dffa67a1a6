"""Local fakes of the services the sources talk to: CivitAI (+ its storage host), the Hugging Face
Hub and Google Drive. Each is a real HTTP server on 127.0.0.1 that behaves like the service."""
