-- Converts between Neovim's byte columns and LSP positions in the client's negotiated encoding
-- (utf-16 by default, utf-8 or utf-32 when the server chose it), so emoji and CJK do not shift ranges.
local M = {}

local function line_text(bufnr, row)
  return vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ""
end

--- Byte column of an LSP position's character on its line.
function M.to_byte(bufnr, position, encoding)
  local line = line_text(bufnr, position.line)
  if encoding == "utf-8" then
    return math.min(position.character, #line)
  end
  local ok, byte = pcall(vim.str_byteindex, line, position.character, encoding ~= "utf-32")
  return ok and byte or #line
end

--- LSP position of a byte column.
function M.to_lsp(bufnr, row, col, encoding)
  local line = line_text(bufnr, row)
  col = math.min(col, #line)
  if encoding == "utf-8" then
    return { line = row, character = col }
  end
  local utf32, utf16 = vim.str_utfindex(line, col)
  return { line = row, character = encoding == "utf-32" and utf32 or utf16 }
end

return M
