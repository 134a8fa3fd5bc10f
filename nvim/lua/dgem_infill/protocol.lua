-- The product's own protocol names. They mirror infill_server/protocol.py;
-- tests/test_protocol_names.py fails when the two disagree.
return {
  REFINEMENT_NOTIFICATION = "dgem/refinement",
  REWRITE_COMMAND = "dgem.rewrite",
  ACCEPT_REWRITE_COMMAND = "dgem.acceptRewrite",
  REJECT_REWRITE_COMMAND = "dgem.rejectRewrite",
}
