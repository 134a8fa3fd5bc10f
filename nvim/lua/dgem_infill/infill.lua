-- Infill at the cursor: asks the server with textDocument/inlineCompletion, draws each dgem/refinement
-- of that request as ghost text, and accepts all of it, a word or a line.
local ghost = require("dgem_infill.ghost")
local position = require("dgem_infill.position")

local M = {}

-- The one request (and the ghost text it draws) at a time. `col`/`end_col` are byte columns on `row`:
-- the ghost text is inserted at col and replaces the bytes up to end_col.
local current = nil
-- changedtick after our own edit (partial accept), so that its TextChangedI keeps the rest of the ghost.
local own_change_tick = nil

M.on_status = function(_, _) end

local function now_ms()
  return vim.loop.hrtime() / 1e6
end

local function cursor()
  local pos = vim.api.nvim_win_get_cursor(0)
  return pos[1] - 1, pos[2]
end

function M.visible()
  return current ~= nil and current.text ~= nil and current.text ~= ""
end

function M.clear()
  if current == nil then
    return
  end
  if not current.done and current.client then
    current.client.cancel_request(current.request_id)
    M.on_status("ready")
  end
  ghost.clear(current.bufnr)
  current = nil
end

--- Draws `text` (to replace the LSP `range`) if it still fits the cursor; keeps it in `current`.
local function show(text, range)
  local bufnr = current.bufnr
  if bufnr ~= vim.api.nvim_get_current_buf() then
    return
  end
  local row, col = cursor()
  if row ~= current.row or col ~= current.col then
    return
  end
  local start_col, end_col = col, col
  if range and range.start.line == row and range["end"].line == row then
    start_col = position.to_byte(bufnr, range.start, current.encoding)
    end_col = math.max(col, position.to_byte(bufnr, range["end"], current.encoding))
  end
  -- Text between the range's start and the cursor is already typed: show only what comes after it.
  if start_col < col then
    local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ""
    local typed = line:sub(start_col + 1, col)
    if text:sub(1, #typed) ~= typed then
      return
    end
    text = text:sub(#typed + 1)
  end
  current.text = text
  current.end_col = end_col
  ghost.show(bufnr, row, col, end_col, text)
end

local function item_text(item)
  local insert = item.insertText
  if type(insert) == "table" then
    return insert.value or ""
  end
  return insert or ""
end

--- Sends textDocument/inlineCompletion at the cursor. trigger_kind: 1 invoked, 2 automatic.
function M.request(client, trigger_kind, streaming)
  M.clear()
  local bufnr = vim.api.nvim_get_current_buf()
  local row, col = cursor()
  local encoding = client.offset_encoding or "utf-16"
  local params = vim.lsp.util.make_position_params(0, encoding)
  params.context = { triggerKind = trigger_kind }
  local request = {
    client = client,
    bufnr = bufnr,
    row = row,
    col = col,
    encoding = encoding,
    version = vim.lsp.util.buf_versions[bufnr],
    streaming = streaming,
    started = now_ms(),
    done = false,
  }
  local ok, request_id = client.request("textDocument/inlineCompletion", params, function(err, result)
    if current ~= request then
      return
    end
    request.done = true
    if err then
      M.on_status("error", err.message or tostring(err))
      return
    end
    M.on_status("ready", now_ms() - request.started)
    if request.moved then
      return -- the user typed or accepted part of it: what shows is already its rest
    end
    local items = result and (result.items or result) or {}
    if items[1] == nil then
      ghost.clear(bufnr)
      request.text = nil
      return
    end
    request.items, request.index = items, 1
    show(item_text(items[1]), items[1].range)
  end, bufnr)
  if ok then
    request.request_id = request_id
    current = request
    M.on_status("busy")
  end
end

--- A dgem/refinement notification; true when it belonged to the request at the cursor.
function M.on_refinement(params)
  local request = current
  if request == nil or params.requestId ~= request.request_id then
    return false
  end
  if request.done or request.moved then
    return true
  end
  if params.version ~= vim.lsp.util.buf_versions[request.bufnr] then
    return true
  end
  if request.streaming or params.done then
    show(params.text, params.range)
  end
  return true
end

--- Shows the next (step 1) or previous (step -1) of the answered request's alternatives (an invoked
--- request has up to 3; on a blank line the second is a one-line fill); false when there is no other.
function M.cycle(step)
  local request = current
  if request == nil or not request.done or request.moved or request.items == nil or #request.items < 2 then
    return false
  end
  request.index = (request.index - 1 + step) % #request.items + 1
  local item = request.items[request.index]
  show(item_text(item), item.range)
  return true
end

--- Inserts `piece` (the start of the ghost text) at the cursor and keeps the rest as ghost text.
local function insert(piece)
  local request = current
  local bufnr, row, col = request.bufnr, request.row, request.col
  local rest = request.text:sub(#piece + 1)
  local lines = vim.split(piece, "\n", { plain = true })
  local whole = rest == ""
  -- Accepting everything also replaces what the infill replaces (end_col); a part only inserts.
  local end_col = whole and request.end_col or col
  vim.api.nvim_buf_set_text(bufnr, row, col, row, end_col, lines)
  local new_row = row + #lines - 1
  local new_col = (#lines == 1 and col or 0) + #lines[#lines]
  vim.api.nvim_win_set_cursor(0, { new_row + 1, new_col })
  if whole then
    ghost.clear(bufnr)
    current = nil
    return
  end
  own_change_tick = vim.api.nvim_buf_get_changedtick(bufnr)
  request.row, request.col = new_row, new_col
  request.end_col = new_row == row and request.end_col + #piece or (request.end_col - col) + new_col
  request.text = rest
  request.moved = true
  ghost.show(bufnr, new_row, new_col, request.end_col, rest)
end

--- Accepts all of the ghost text; false when none is shown.
function M.accept()
  if not M.visible() then
    return false
  end
  insert(current.text)
  return true
end

function M.accept_word()
  if not M.visible() then
    return false
  end
  insert(ghost.next_word(current.text))
  return true
end

function M.accept_line()
  if not M.visible() then
    return false
  end
  insert(ghost.next_line(current.text))
  return true
end

--- TextChangedI: true when the change is our own partial accept (the ghost text stays).
function M.own_change(bufnr)
  local ours = own_change_tick ~= nil and own_change_tick == vim.api.nvim_buf_get_changedtick(bufnr)
  own_change_tick = nil
  return ours
end

--- Typing the start of the ghost text keeps the rest on screen (no new request): true when the text
--- typed since the ghost was drawn is its beginning. Safe to call from both TextChangedI and
--- CursorMovedI, whichever comes first.
function M.typed_through()
  local request = current
  if not M.visible() or request.bufnr ~= vim.api.nvim_get_current_buf() then
    return false
  end
  local row, col = cursor()
  if row ~= request.row or col < request.col then
    return false
  end
  if col == request.col then
    return true
  end
  local line = vim.api.nvim_buf_get_lines(request.bufnr, row, row + 1, false)[1] or ""
  local typed = line:sub(request.col + 1, col)
  if request.text:sub(1, #typed) ~= typed or #typed >= #request.text then
    return false
  end
  request.text = request.text:sub(#typed + 1)
  request.end_col = request.end_col + #typed
  request.col = col
  request.moved = true
  ghost.show(request.bufnr, row, col, request.end_col, request.text)
  return true
end

--- CursorMovedI: the ghost text stays only while the cursor is where it was drawn (or typed through it).
function M.cursor_still_at_ghost()
  if current == nil then
    return true
  end
  return M.typed_through()
end

return M
