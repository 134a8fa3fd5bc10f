// The product's own protocol names. They mirror infill_server/protocol.py;
// tests/test_protocol_names.py fails when the two disagree.

export const REFINEMENT_NOTIFICATION = "dgem/refinement";
export const REWRITE_COMMAND = "dgem.rewrite";
export const ACCEPT_REWRITE_COMMAND = "dgem.acceptRewrite";
export const REJECT_REWRITE_COMMAND = "dgem.rejectRewrite";

/** Params of REFINEMENT_NOTIFICATION: the current text of a hole after one denoising step. */
export interface RefinementParams {
    uri: string;
    version: number;
    /** JSON-RPC id of the inlineCompletion request or of the dgem.rewrite executeCommand request. */
    requestId: number | string;
    step: number;
    text: string;
    range: LspRange;
    done: boolean;
}

export interface LspPosition {
    line: number;
    character: number;
}

export interface LspRange {
    start: LspPosition;
    end: LspPosition;
}
