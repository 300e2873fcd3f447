-- Driven by tests/e2e/test_neovim.py: start kenning through clients/neovim, edit an
-- unsaved buffer, find the new code with :KenningSearch, then :KenningSimilar and
-- workspace/symbol. Writes what it saw as JSON to $KENNING_TEST_OUT and quits.
local result = { steps = {} }
local function step(name) table.insert(result.steps, name) end

local function finish()
  vim.fn.writefile({ vim.fn.json_encode(result) }, vim.env.KENNING_TEST_OUT)
  vim.cmd("qa!")
end

local ok, err = pcall(function()
  vim.opt.runtimepath:append(vim.env.KENNING_NVIM_RTP)
  local kenning = require("kenning")
  kenning.setup({ cmd = { vim.env.KENNING_PYTHON, vim.env.KENNING_SERVER } })
  vim.cmd("edit " .. vim.fn.fnameescape(vim.env.KENNING_FILE))
  step("edited")

  local client
  assert(vim.wait(30000, function()
    for _, c in pairs(vim.lsp.buf_get_clients(0)) do
      if c.name == "kenning" and c.initialized then client = c end
    end
    return client ~= nil
  end, 50), "the kenning client never initialised")
  step("attached")

  local function command(name, args)
    local r = client.request_sync("workspace/executeCommand", { command = name, arguments = { args } }, 5000, 0)
    assert(r and not r.err, name .. " failed: " .. vim.inspect(r))
    return r.result
  end

  assert(vim.wait(30000, function()
    local s = command("kenning.status", {})
    result.last_status = { files = s.files, pending = s.pending, indexing = tostring(s.metrics.indexing),
      queued = s.metrics.queued, folders = #s.folders }
    return s.files > 0 and s.pending == 0 and (s.metrics.indexing == nil or s.metrics.indexing == vim.NIL)
  end, 100), "the first index never finished")
  step("indexed")

  -- An unsaved edit: new lines at the end of the buffer.
  result.before = #command("kenning.search", { query = "frobnicate_widgets", mode = "lexical" }).results
  local n = vim.api.nvim_buf_line_count(0)
  vim.api.nvim_buf_set_lines(0, n, n, false, {
    "",
    "def frobnicate_widgets(widgets):",
    '    """Polish every widget until it shines."""',
    "    return [w.polish() for w in widgets]",
  })
  result.new_line = n + 2
  result.modified = vim.bo.modified

  -- Lexical mode, so only the new words can match (the fake embedder finds anything).
  local found = false
  local deadline = vim.loop.now() + 15000
  while not found and vim.loop.now() < deadline do
    vim.fn.setqflist({}, "r")
    kenning.search("frobnicate_widgets", { mode = "lexical" })
    vim.wait(1000, function() return #vim.fn.getqflist() > 0 end, 20)
    found = #vim.fn.getqflist() > 0
  end
  result.search_qf = vim.tbl_map(function(item)
    return { file = vim.api.nvim_buf_get_name(item.bufnr), lnum = item.lnum, text = item.text }
  end, vim.fn.getqflist())
  vim.fn.setqflist({}, "r")
  vim.cmd("KenningSearch polish every widget")
  vim.wait(3000, function() return #vim.fn.getqflist() > 0 end, 20)
  result.command_qf = #vim.fn.getqflist()
  step("searched")

  vim.fn.setqflist({}, "r")
  vim.api.nvim_set_current_win(vim.fn.bufwinid(vim.fn.bufnr(vim.env.KENNING_FILE)))
  vim.api.nvim_win_set_cursor(0, { 1, 0 })
  vim.cmd("KenningSimilar")
  vim.wait(5000, function() return #vim.fn.getqflist() > 0 end, 20)
  result.similar_qf = vim.tbl_map(function(item)
    return { file = vim.api.nvim_buf_get_name(item.bufnr), lnum = item.lnum }
  end, vim.fn.getqflist())
  step("similar")

  local sym = client.request_sync("workspace/symbol", { query = "area of a circle" }, 5000, 0)
  result.symbols = vim.tbl_map(function(s)
    return { name = s.name, uri = s.location.uri, line = s.location.range.start.line }
  end, (sym and sym.result) or {})
  step("symbols")
end)

if not ok then result.error = tostring(err) end
finish()
