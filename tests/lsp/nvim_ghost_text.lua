-- Run by test_neovim_headless.py: Neovim's own LSP client asks dgem-infill for an inline completion
-- and draws it as ghost text with extmarks (Neovim 0.7 has no inline-completion UI).
-- Inputs come from the environment; the outcome is written as JSON to $DGEM_TEST_OUT.
local out_path = os.getenv("DGEM_TEST_OUT")
local outcome = { refinements = 0, done_text = vim.NIL }

local function finish(fields)
  for key, value in pairs(fields) do
    outcome[key] = value
  end
  local file = assert(io.open(out_path, "w"))
  file:write(vim.fn.json_encode(outcome))
  file:close()
  vim.cmd("qa!")
end

local ok, err = pcall(function()
  local buf = vim.api.nvim_create_buf(true, false)
  vim.api.nvim_buf_set_name(buf, os.getenv("DGEM_TEST_FILE"))
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, { "def add(a, b):", "    return ", "", "print(add(1, 2))" })
  vim.api.nvim_buf_set_option(buf, "filetype", "python")

  local client_id = vim.lsp.start_client({
    name = "dgem-infill",
    cmd = { os.getenv("DGEM_TEST_PYTHON"), "-m", "lsp", "--stdio" },
    cmd_cwd = os.getenv("DGEM_TEST_CWD"),
    root_dir = os.getenv("DGEM_TEST_CWD"),
    init_options = { model = os.getenv("DGEM_TEST_MODEL"), device = "cpu" },
    handlers = {
      ["dgem/refinement"] = function(_, params)
        outcome.refinements = outcome.refinements + 1
        if params.done then
          outcome.done_text = params.text
        end
      end,
    },
  })
  local client = vim.lsp.get_client_by_id(client_id)
  assert(vim.wait(90000, function() return client.initialized end, 50), "server did not initialize")
  vim.lsp.buf_attach_client(buf, client_id) -- sends didOpen

  local row, character = 1, 11
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(buf) },
    position = { line = row, character = character },
    context = { triggerKind = 1 },
  }
  local reply = nil
  client.request("textDocument/inlineCompletion", params, function(request_err, result)
    reply = { err = request_err, result = result or vim.NIL }
  end, buf)
  assert(vim.wait(90000, function() return reply ~= nil end, 20), "no inline completion reply")
  if reply.err then
    return finish({ error = vim.inspect(reply.err) })
  end
  local items = reply.result.items or reply.result
  if #items == 0 then
    return finish({ items = 0 })
  end

  -- Ghost text: the first line overlays the cursor's line, the rest hang below as virtual lines.
  local item = items[1]
  local start = item.range.start
  local line_text = vim.api.nvim_buf_get_lines(buf, start.line, start.line + 1, false)[1]
  local col = vim.str_byteindex(line_text, start.character, true) -- the server speaks UTF-16
  local lines = vim.split(item.insertText, "\n", true)
  local virt_lines = {}
  for i = 2, #lines do
    table.insert(virt_lines, { { lines[i], "Comment" } })
  end
  local ns = vim.api.nvim_create_namespace("dgem_ghost_text")
  vim.api.nvim_buf_set_extmark(buf, ns, start.line, col, {
    virt_text = { { lines[1], "Comment" } },
    virt_text_pos = "overlay",
    virt_lines = #virt_lines > 0 and virt_lines or nil,
  })

  -- Read the drawing back from Neovim, not from our own variables.
  local marks = vim.api.nvim_buf_get_extmarks(buf, ns, 0, -1, { details = true })
  local details = marks[1][4]
  local drawn = { details.virt_text[1][1] }
  for _, virt_line in ipairs(details.virt_lines or {}) do
    table.insert(drawn, virt_line[1][1])
  end
  finish({
    items = #items,
    insert_text = item.insertText,
    mark_row = marks[1][2],
    mark_col = marks[1][3],
    ghost_text = table.concat(drawn, "\n"),
  })
end)
if not ok then
  finish({ error = tostring(err) })
end
