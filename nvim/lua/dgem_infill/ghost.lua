-- Draws ghost text with extmarks, the same way on every Neovim from 0.7: the first line is an
-- overlay at the cursor followed by the rest of the real line (so it looks inserted, since 0.7 has no
-- inline virtual text), and the other lines are virt_lines under it.
local M = {}

M.ns = vim.api.nvim_create_namespace("dgem_infill_ghost")

local HL = "DgemInfillGhost"

local function width(s)
  return vim.fn.strdisplaywidth(s)
end

--- Shows `text` as ghost text inserted at (row, col) of `bufnr` (0-based row, byte columns), replacing
--- the line's bytes from col to end_col (end_col == col: a pure insertion).
function M.show(bufnr, row, col, end_col, text)
  M.clear(bufnr)
  if text == "" then
    return
  end
  local lines = vim.split(text, "\n", { plain = true })
  local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ""
  col = math.min(col, #line)
  local covered = line:sub(col + 1) -- the cells the overlay draws over
  local rest = line:sub(math.max(col, end_col) + 1) -- what follows the inserted text

  local first = { { lines[1], HL } }
  if #lines == 1 then
    table.insert(first, { rest, "Normal" })
  end
  local drawn = 0
  for _, chunk in ipairs(first) do
    drawn = drawn + width(chunk[1])
  end
  if drawn < width(covered) then
    table.insert(first, { string.rep(" ", width(covered) - drawn), "Normal" })
  end

  local opts = { virt_text = first, virt_text_pos = "overlay", hl_mode = "combine" }
  if #lines > 1 then
    local virt_lines = {}
    for i = 2, #lines do
      local chunks = { { lines[i], HL } }
      if i == #lines and rest ~= "" then
        table.insert(chunks, { rest, "Normal" })
      end
      table.insert(virt_lines, chunks)
    end
    opts.virt_lines = virt_lines
  end
  vim.api.nvim_buf_set_extmark(bufnr, M.ns, row, col, opts)
end

function M.clear(bufnr)
  if vim.api.nvim_buf_is_valid(bufnr) then
    vim.api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  end
end

--- The leading part of `text` that "accept word" takes: spaces, then a word or a run of punctuation.
function M.next_word(text)
  return text:match("^%s*[%w_]+") or text:match("^%s*[^%w_%s]+") or text
end

--- The leading part of `text` that "accept line" takes: up to the end of its first line (a leading
--- newline belongs to the line that follows it).
function M.next_line(text)
  local newline = text:find("\n", 2, true)
  if newline == nil then
    return text
  end
  return text:sub(1, newline - 1)
end

return M
