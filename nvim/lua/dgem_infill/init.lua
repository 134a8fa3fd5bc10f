-- dgem-infill for Neovim: ghost text from the dgem-infill language server through Neovim's built-in
-- LSP client. Works on Neovim 0.7.2 and later; uses vim.lsp.inline_completion where Neovim has it.
--
--   require("dgem_infill").setup{}        see nvim/README.md for every option
local infill = require("dgem_infill.infill")
local protocol = require("dgem_infill.protocol")
local rewrite = require("dgem_infill.rewrite")

local M = {}

local defaults = {
  -- The server; the first word must be an executable (name on PATH or full path).
  cmd = { "dgem-infill", "--stdio" },
  filetypes = { "python", "javascript", "typescript", "go", "rust" },
  -- Sent to the server as initializationOptions and workspace/didChangeConfiguration.
  settings = {
    model = nil, -- model directory or Hugging Face id; nil: the shipped model
    device = "auto", -- "auto" | "cpu" | "cuda"
    max_tokens = 64, -- largest hole, in tokens
    steps = nil, -- denoising steps per block; nil: the model's default
    length = "auto", -- single-line length: "auto" | "probe" | "likelihood" (better; the shipped default)
  },
  keys = {
    accept = "<Tab>", -- accepts the ghost text; types a Tab when none shows
    accept_word = "<M-Right>",
    accept_line = "<M-C-Right>",
    trigger = "<M-\\>",
    next = "<M-]>", -- the next alternative of an answered request (previous: keys.prev)
    prev = "<M-[>",
    reject_rewrite = "<Esc>", -- normal mode, while a :DgemRewrite preview shows (accept: keys.accept)
  },
  auto_trigger = true, -- ask while typing in insert mode (else only keys.trigger)
  debounce_ms = 75,
  refinements = "stream", -- "stream": redraw on every refinement step; "final": only the result
  native = "auto", -- "auto": vim.lsp.inline_completion when present (no streaming); false: never
}

M.config = vim.deepcopy(defaults)
local client_id = nil
local state = { status = "starting", detail = "", latency_ms = nil }
local group = nil
local debounce = nil

local function client()
  local c = client_id and vim.lsp.get_client_by_id(client_id)
  if c and c.initialized ~= false and not c.is_stopped() then
    return c
  end
  return nil
end

local function use_native()
  return M.config.native ~= false and vim.lsp.inline_completion ~= nil
end

local function set_status(status, detail)
  state.status = status
  if status == "ready" and detail == nil then
    state.detail = "" -- and keep the last latency
  elseif status == "ready" and type(detail) == "number" then
    state.latency_ms = math.floor(detail + 0.5)
    state.detail = ""
  else
    state.detail = detail or ""
  end
end
infill.on_status = set_status
rewrite.on_status = set_status

--- A short text for a statusline: "dgem: loading", "dgem 42 ms", "dgem: error".
function M.status()
  if state.status == "ready" then
    return state.latency_ms and string.format("dgem %d ms", state.latency_ms) or "dgem"
  end
  return "dgem: " .. state.status
end

local function server_settings()
  local s = vim.deepcopy(M.config.settings)
  s.languages = M.config.filetypes
  return s
end

local function termcodes(key)
  return vim.api.nvim_replace_termcodes(key, true, false, true)
end

--- The key's own meaning, for when there is nothing to accept.
local function passthrough(key)
  -- "i": in front of keys already typed ahead, so the Tab lands where it was typed.
  vim.api.nvim_feedkeys(termcodes(key), "in", false)
end

function M.accept()
  if use_native() then
    return vim.lsp.inline_completion.get() and true or false
  end
  return infill.accept()
end

function M.accept_word()
  return infill.accept_word()
end

function M.accept_line()
  return infill.accept_line()
end

function M.next()
  return infill.cycle(1)
end

function M.prev()
  return infill.cycle(-1)
end

function M.dismiss()
  infill.clear()
end

function M.trigger()
  local c = client()
  if c then
    infill.request(c, 1, M.config.refinements == "stream")
  end
end

local function on_text_changed(bufnr)
  if infill.own_change(bufnr) or infill.typed_through() then
    return
  end
  infill.clear()
  if not M.config.auto_trigger or use_native() or rewrite.pending() then
    return
  end
  debounce:stop()
  debounce:start(M.config.debounce_ms, 0, vim.schedule_wrap(function()
    if vim.api.nvim_get_current_buf() == bufnr and vim.fn.mode() == "i" and client() then
      infill.request(client(), 2, M.config.refinements == "stream")
    end
  end))
end

local function map_buffer(bufnr)
  local keys = M.config.keys
  local function imap(key, fn, desc)
    if key then
      vim.keymap.set("i", key, fn, { buffer = bufnr, desc = "dgem-infill: " .. desc })
    end
  end
  -- A key whose action has nothing to act on (no ghost text, no other alternative) keeps its own meaning.
  local function imap_or_pass(name, action, desc)
    imap(keys[name], function()
      if not action() then
        passthrough(keys[name])
      end
    end, desc)
  end
  imap_or_pass("accept", M.accept, "accept the ghost text")
  imap_or_pass("accept_word", M.accept_word, "accept the next word of the ghost text")
  imap_or_pass("accept_line", M.accept_line, "accept the next line of the ghost text")
  imap(keys.trigger, M.trigger, "infill at the cursor")
  imap_or_pass("next", M.next, "show the next alternative")
  imap_or_pass("prev", M.prev, "show the previous alternative")
end

local function on_attach(c, bufnr)
  if use_native() then
    vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
  end
  map_buffer(bufnr)
  vim.api.nvim_create_autocmd("TextChangedI", {
    group = group,
    buffer = bufnr,
    callback = function()
      on_text_changed(bufnr)
    end,
  })
  vim.api.nvim_create_autocmd("CursorMovedI", {
    group = group,
    buffer = bufnr,
    callback = function()
      if not infill.cursor_still_at_ghost() then
        infill.clear()
      end
    end,
  })
  -- Esc (or anything else that leaves insert mode) dismisses the ghost text.
  vim.api.nvim_create_autocmd({ "InsertLeave", "BufLeave" }, { group = group, buffer = bufnr, callback = infill.clear })
  if state.status == "starting" then
    set_status("ready")
  end
  vim.b[bufnr].dgem_infill_client_id = c.id
  vim.cmd("doautocmd <nomodeline> User DgemInfillAttached")
end

local function on_refinement(_, params)
  if params and not rewrite.on_refinement(params) then
    infill.on_refinement(params)
  end
end

-- Model loading is reported with $/progress: follow it in M.status(), then let Neovim handle it too.
local function on_progress(err, result, ctx, config)
  local value = result and result.value
  if type(value) == "table" and value.kind then
    if value.kind == "end" then
      set_status("ready")
    else
      set_status("loading", value.message or value.title)
    end
  end
  local default = vim.lsp.handlers["$/progress"]
  if default then
    return default(err, result, ctx, config)
  end
end

local function start_client()
  local exe = M.config.cmd[1]
  if vim.fn.executable(exe) ~= 1 then
    set_status("error", exe .. " not found")
    vim.notify(
      string.format(
        "dgem-infill: the server %q was not found. Install it with `pip install dgem-infill`, or give its full path:"
          .. ' require("dgem_infill").setup{ cmd = { "/path/to/dgem-infill", "--stdio" } }',
        exe
      ),
      vim.log.levels.ERROR
    )
    return nil
  end
  return vim.lsp.start_client({
    name = "dgem-infill",
    cmd = M.config.cmd,
    root_dir = vim.loop.cwd(),
    init_options = server_settings(),
    settings = server_settings(),
    -- Send every change at once: an infill request must never see a stale document.
    flags = { debounce_text_changes = 0 },
    handlers = {
      [protocol.REFINEMENT_NOTIFICATION] = on_refinement,
      ["$/progress"] = on_progress,
    },
    on_attach = on_attach,
    on_exit = function(code)
      client_id = nil
      infill.clear()
      rewrite.reject()
      if code ~= 0 then
        set_status("error", "the server exited with code " .. tostring(code))
      end
    end,
  })
end

local function attach(bufnr)
  if client_id == nil then
    client_id = start_client()
  end
  if client_id ~= nil then
    vim.lsp.buf_attach_client(bufnr, client_id)
  end
end

--- :DgemRewrite on a range: the visual selection (characterwise or linewise) or whole lines.
local function rewrite_command(opts)
  local c = client()
  if not c then
    vim.notify("dgem-infill: the server is not running", vim.log.levels.ERROR)
    return
  end
  local start_row, start_col, end_row, end_col
  local vstart, vend = vim.fn.getpos("'<"), vim.fn.getpos("'>")
  if opts.range == 2 and vim.fn.visualmode() == "v" and vstart[2] == opts.line1 and vend[2] == opts.line2 then
    start_row, start_col = vstart[2] - 1, vstart[3] - 1
    end_row = vend[2] - 1
    local line = vim.api.nvim_buf_get_lines(0, end_row, end_row + 1, false)[1] or ""
    -- '> marks the first byte of the last selected character; the range ends after all of its bytes.
    local last_char = vim.fn.strpart(line, vend[3] - 1, 1, true)
    end_col = math.min(#line, vend[3] - 1 + math.max(#last_char, 1))
  else
    start_row, start_col = opts.line1 - 1, 0
    end_row = opts.line2 - 1
    end_col = #(vim.api.nvim_buf_get_lines(0, end_row, end_row + 1, false)[1] or "")
  end
  rewrite.start(c, start_row, start_col, end_row, end_col)
end

function M.setup(opts)
  M.config = vim.tbl_deep_extend("force", vim.deepcopy(defaults), opts or {})
  rewrite.set_keys(M.config.keys.accept, M.config.keys.reject_rewrite)
  debounce = debounce or vim.loop.new_timer()
  vim.cmd([[
    highlight default link DgemInfillGhost Comment
    highlight default link DgemInfillAdded DiffAdd
    highlight default link DgemInfillRemoved DiffDelete
  ]])

  group = vim.api.nvim_create_augroup("dgem_infill", { clear = true })
  vim.api.nvim_create_autocmd("FileType", {
    group = group,
    pattern = M.config.filetypes,
    callback = function(args)
      attach(args.buf)
    end,
  })
  vim.api.nvim_create_user_command("DgemRewrite", rewrite_command, { range = true })
  vim.api.nvim_create_user_command("DgemRewriteAccept", rewrite.accept, {})
  vim.api.nvim_create_user_command("DgemRewriteReject", rewrite.reject, {})
  vim.api.nvim_create_user_command("DgemInfill", M.trigger, {})
  vim.api.nvim_create_user_command("DgemStatus", function()
    print(M.status() .. (state.detail ~= "" and (" (" .. state.detail .. ")") or ""))
  end, {})

  -- Buffers already open when setup() runs.
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(bufnr) and vim.tbl_contains(M.config.filetypes, vim.bo[bufnr].filetype) then
      attach(bufnr)
    end
  end
end

return M
