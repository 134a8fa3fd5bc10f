"""Names of the product's own protocol, declared once.

Editor clients (vscode-extension/, nvim/) must use exactly these strings; tests/test_protocol_names.py
checks that they do.
"""

# LSP: custom notification streamed while a request denoises, and the inline-edit commands.
REFINEMENT_NOTIFICATION = "dgem/refinement"
REWRITE_COMMAND = "dgem.rewrite"
ACCEPT_REWRITE_COMMAND = "dgem.acceptRewrite"
REJECT_REWRITE_COMMAND = "dgem.rejectRewrite"

# Websocket API message types.
WS_INFILL = "infill"
WS_CANCEL = "cancel"
WS_REFINEMENT = "refinement"
WS_RESULT = "result"
WS_ERROR = "error"

# Settings section a client may wrap its settings in (VS Code: {"dgemInfill": {...}}).
SETTINGS_SECTION = "dgemInfill"
