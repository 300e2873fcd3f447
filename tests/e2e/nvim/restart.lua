-- Driven by tests/e2e/test_neovim.py: the first server dies at once; clients/neovim
-- must start a second one and re-attach the buffer, which then answers a search.
local result = { steps = {} }
local function step(name) table.insert(result.steps, name) end

local ok, err = pcall(function()
  vim.opt.runtimepath:append(vim.env.KENNING_NVIM_RTP)
  local kenning = require("kenning")
  kenning.setup({ cmd = { vim.env.KENNING_PYTHON, vim.env.KENNING_CRASH_ONCE } })
  vim.cmd("edit " .. vim.fn.fnameescape(vim.env.KENNING_FILE))
  step("edited")

  local client
  assert(vim.wait(40000, function()
    for _, c in pairs(vim.lsp.buf_get_clients(0)) do
      if c.name == "kenning" and c.initialized then client = c end
    end
    return client ~= nil
  end, 50), "no kenning client came up after the crash")
  step("restarted")

  local answer
  assert(vim.wait(20000, function()
    local r = client.request_sync("workspace/executeCommand",
      { command = "kenning.search", arguments = { { query = "area_of_circle", mode = "lexical" } } }, 5000, 0)
    answer = r and r.result
    return answer ~= nil and #answer.results > 0
  end, 200), "the restarted server never answered a search")
  result.first = vim.fn.fnamemodify(vim.uri_to_fname(answer.results[1].uri), ":t")
  step("searched")
end)

if not ok then result.error = tostring(err) end
vim.fn.writefile({ vim.fn.json_encode(result) }, vim.env.KENNING_TEST_OUT)
vim.cmd("qa!")
