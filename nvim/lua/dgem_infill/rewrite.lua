-- :DgemRewrite: the server regenerates a selection and streams it (dgem/refinement); the preview
-- marks the old text and shows the new text under it until the user accepts or rejects. Accepting asks
-- the server to apply the edit (workspace/applyEdit, applied by Neovim's own handler).
local position = require("dgem_infill.position")
local protocol = require("dgem_infill.protocol")

local M = {}

M.ns = vim.api.nvim_create_namespace("dgem_infill_rewrite")
M.on_status = function(_, _) end

local session = nil
local keys = { accept = "<Tab>", reject = "<Esc>" }

function M.set_keys(accept, reject)
  keys.accept, keys.reject = accept, reject
end

function M.pending()
  return session ~= nil
end

local function render()
  local s = session
  vim.api.nvim_buf_clear_namespace(s.bufnr, M.ns, 0, -1)
  local virt_lines = {}
  for _, line in ipairs(vim.split(s.text, "\n", { plain = true })) do
    table.insert(virt_lines, { { line, "DgemInfillAdded" } })
  end
  local hint = s.done
      and string.format("dgem-infill: %s accept, %s reject", keys.accept or ":DgemRewriteAccept", keys.reject or ":DgemRewriteReject")
    or string.format("dgem-infill: rewriting (step %d)", s.step)
  table.insert(virt_lines, { { hint, "Comment" } })
  vim.api.nvim_buf_set_extmark(s.bufnr, M.ns, s.start_row, s.start_col, {
    end_row = s.end_row,
    end_col = s.end_col,
    hl_group = "DgemInfillRemoved",
  })
  -- The new text hangs under the selection's last line.
  vim.api.nvim_buf_set_extmark(s.bufnr, M.ns, s.end_row, 0, { virt_lines = virt_lines })
end

local function unmap(bufnr)
  for _, key in pairs(keys) do
    if key then
      pcall(vim.keymap.del, "n", key, { buffer = bufnr })
    end
  end
end

local function finish()
  local s = session
  session = nil
  if s then
    vim.api.nvim_buf_clear_namespace(s.bufnr, M.ns, 0, -1)
    unmap(s.bufnr)
  end
  return s
end

local function execute(s, command)
  s.client.request("workspace/executeCommand", { command = command, arguments = { s.rewrite_id } }, function(err)
    if err then
      vim.notify("dgem-infill: " .. command .. " failed: " .. (err.message or tostring(err)), vim.log.levels.ERROR)
    end
  end, s.bufnr)
end

--- Starts a rewrite of the byte range (start_row, start_col) .. (end_row, end_col) of the current buffer.
function M.start(client, start_row, start_col, end_row, end_col)
  M.reject()
  local bufnr = vim.api.nvim_get_current_buf()
  local encoding = client.offset_encoding or "utf-16"
  local range = {
    start = position.to_lsp(bufnr, start_row, start_col, encoding),
    ["end"] = position.to_lsp(bufnr, end_row, end_col, encoding),
  }
  local s = {
    client = client,
    bufnr = bufnr,
    start_row = start_row,
    start_col = start_col,
    end_row = end_row,
    end_col = end_col,
    text = "",
    step = 0,
    done = false,
    started = vim.loop.hrtime(),
  }
  local params = {
    command = protocol.REWRITE_COMMAND,
    arguments = { { uri = vim.uri_from_bufnr(bufnr), range = range } },
  }
  local ok, request_id = client.request("workspace/executeCommand", params, function(err, result)
    if session ~= s then
      return
    end
    if err then
      finish()
      M.on_status("error", err.message or tostring(err))
      vim.notify("dgem-infill: rewrite failed: " .. (err.message or tostring(err)), vim.log.levels.ERROR)
      return
    end
    if type(result) ~= "table" then
      finish()
      return
    end
    -- The answer holds the final text as well: show it even if a notification was missed.
    s.rewrite_id, s.text, s.done = result.rewriteId, result.text or s.text, true
    render()
    M.on_status("ready", (vim.loop.hrtime() - s.started) / 1e6)
    if s.accept_when_ready then
      M.accept()
    end
  end, bufnr)
  if not ok then
    vim.notify("dgem-infill: the server is not running", vim.log.levels.ERROR)
    return
  end
  s.request_id = request_id
  session = s
  M.on_status("busy")
  if keys.accept then
    vim.keymap.set("n", keys.accept, M.accept, { buffer = bufnr, desc = "dgem-infill: accept the rewrite" })
  end
  if keys.reject then
    vim.keymap.set("n", keys.reject, M.reject, { buffer = bufnr, desc = "dgem-infill: reject the rewrite" })
  end
  render()
end

--- A dgem/refinement notification; true when it belonged to the rewrite.
function M.on_refinement(params)
  local s = session
  if s == nil or params.requestId ~= s.request_id then
    return false
  end
  s.text, s.step, s.done = params.text, params.step or s.step, params.done
  render()
  return true
end

--- Applies the rewrite; if the server is still rewriting, applies it as soon as it is done.
function M.accept()
  local s = session
  if s == nil then
    return
  end
  if not s.done or s.rewrite_id == nil then
    s.accept_when_ready = true
    return
  end
  finish()
  execute(s, protocol.ACCEPT_REWRITE_COMMAND)
end

function M.reject()
  local s = finish()
  if s == nil then
    return
  end
  -- The rewriteId is the request's id, so a rewrite still streaming can be rejected (and stopped) too.
  s.rewrite_id = s.rewrite_id or s.request_id
  execute(s, protocol.REJECT_REWRITE_COMMAND)
end

return M
