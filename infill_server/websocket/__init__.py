"""The websocket API for custom tools (`dgem-infill --ws`): many clients, streamed refinements.

server.py   connections, requests in flight, readiness; `run()` is the CLI's entry point
auth.py     token resolution and the handshake checks (token, Origin)
messages.py frame validation (client -> server) and the shape of server messages
positions.py LSP-style (line, UTF-16 character) positions -> string offsets
outbox.py   per-connection send queue that coalesces refinements for slow readers
"""
