-- kenning for Neovim: start the language server and search from the command line.
--
-- Works with Neovim 0.7 (vim.lsp.start_client) and newer (vim.lsp.start).
--   require("kenning").setup({})          -- start for every file buffer
--   :KenningSearch parse json config      -- semantic search -> quickfix list
--   :KenningSimilar  (or :'<,'>KenningSimilar on a selection) -> quickfix list
-- workspace/symbol is semantic too: vim.lsp.buf.workspace_symbol("retry http").

local M = {}

M.config = {
  cmd = { "kenning", "lsp" },
  -- The server's settings (see CONTRACT.md), e.g. { search = { k = 30 } }.
  settings = {},
  root_markers = { ".git", ".kenningignore", "pyproject.toml", "package.json", "Cargo.toml", "go.mod" },
  k = 20,
  -- The server exits with status 1 when the connection breaks (lost framing) so
  -- that the editor restarts it; Neovim's client does not by itself. At most
  -- `restarts` times within `restart_window_s`, as VS Code's client does.
  restarts = 4,
  restart_window_s = 180,
}

local clients = {} -- root -> client id (Neovim 0.7 has no vim.lsp.start to reuse them)
local attached = {} -- root -> { [bufnr] = true }: buffers to re-attach after a restart
local crashes = {} -- root -> times of recent abnormal exits

local function find_root(path)
  local dir = vim.fn.fnamemodify(path, ":p:h")
  while dir and dir ~= "" do
    for _, marker in ipairs(M.config.root_markers) do
      if vim.loop.fs_stat(dir .. "/" .. marker) then
        return dir
      end
    end
    local parent = vim.fn.fnamemodify(dir, ":h")
    if parent == dir then
      break
    end
    dir = parent
  end
  return vim.fn.getcwd()
end

local restart

local function client_config(root)
  return {
    name = "kenning",
    cmd = M.config.cmd,
    root_dir = root,
    workspace_folders = { { uri = vim.uri_from_fname(root), name = vim.fn.fnamemodify(root, ":t") } },
    init_options = M.config.settings,
    settings = { kenning = M.config.settings },
    on_exit = function(code, signal)
      if code ~= 0 or signal ~= 0 then
        vim.schedule(function()
          restart(root, code, signal)
        end)
      end
    end,
  }
end

-- An abnormal exit: start a new server for the root and give it back its buffers.
restart = function(root, code, signal)
  local now = vim.loop.now() / 1000
  local recent = {}
  for _, t in ipairs(crashes[root] or {}) do
    if now - t < M.config.restart_window_s then
      table.insert(recent, t)
    end
  end
  table.insert(recent, now)
  crashes[root] = recent
  if #recent > M.config.restarts then
    vim.notify(string.format("kenning: the language server stopped (exit %d, signal %d) %d times in %ds; "
      .. "not restarting it (see its log)", code, signal, #recent, M.config.restart_window_s), vim.log.levels.ERROR)
    return
  end
  vim.notify(string.format("kenning: the language server stopped (exit %d, signal %d); restarting it", code,
    signal), vim.log.levels.WARN)
  clients[root] = nil
  for bufnr in pairs(attached[root] or {}) do
    if vim.api.nvim_buf_is_valid(bufnr) then
      M.attach(bufnr)
    end
  end
end

function M.attach(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local name = vim.api.nvim_buf_get_name(bufnr)
  if name == "" or vim.bo[bufnr].buftype ~= "" then
    return
  end
  local root = find_root(name)
  attached[root] = attached[root] or {}
  attached[root][bufnr] = true
  if vim.lsp.start then -- Neovim 0.8+: reuses a client with the same name and root
    return vim.lsp.start(client_config(root), { bufnr = bufnr })
  end
  local id = clients[root]
  if not id or vim.lsp.get_client_by_id(id) == nil then
    id = vim.lsp.start_client(client_config(root))
    clients[root] = id
  end
  if id then
    vim.lsp.buf_attach_client(bufnr, id)
  end
  return id
end

local function kenning_client(bufnr)
  for _, client in pairs(vim.lsp.buf_get_clients(bufnr or 0)) do
    if client.name == "kenning" then
      return client
    end
  end
  for _, client in pairs(vim.lsp.get_active_clients()) do
    if client.name == "kenning" then
      return client
    end
  end
  return nil
end

local function first_line(text)
  for line in (text or ""):gmatch("[^\n]+") do
    local s = line:gsub("^%s+", "")
    if s ~= "" then
      return s
    end
  end
  return ""
end

-- Fill the quickfix list from a kenning.search / kenning.similar answer.
function M.to_quickfix(title, result)
  local items = {}
  for _, r in ipairs(result.results or {}) do
    table.insert(items, {
      filename = vim.uri_to_fname(r.uri),
      lnum = r.range.start.line + 1,
      col = r.range.start.character + 1,
      text = string.format("%.2f %s: %s", r.score, r.symbol or r.kind, first_line(r.snippet)),
    })
  end
  vim.fn.setqflist({}, " ", { title = title, items = items })
  return #items
end

-- Run a kenning.* command and hand the result to on_result (or show the error).
function M.execute(command, args, on_result)
  local client = kenning_client(0)
  if not client then
    vim.notify("kenning: the language server is not running for this buffer", vim.log.levels.WARN)
    return
  end
  client.request("workspace/executeCommand", { command = command, arguments = { args } }, function(err, result)
    if err then
      vim.notify("kenning: " .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
      return
    end
    on_result(result)
  end, 0)
end

local function show(title)
  return function(result)
    local n = M.to_quickfix(title, result)
    if n == 0 then
      vim.notify("kenning: no results", vim.log.levels.INFO)
    else
      vim.cmd("copen")
    end
  end
end

function M.search(query, opts)
  opts = opts or {}
  M.execute("kenning.search", {
    query = query,
    k = opts.k or M.config.k,
    lang = opts.lang,
    glob = opts.glob,
    mode = opts.mode,
  },
    show("kenning: " .. query))
end

-- line1/line2 are 1-based; without them the chunk under the cursor is used.
function M.similar(line1, line2)
  local uri = vim.uri_from_bufnr(0)
  local args = { uri = uri, k = M.config.k }
  if line1 and line2 and line2 > line1 then
    args.range = { start = { line = line1 - 1, character = 0 }, ["end"] = { line = line2, character = 0 } }
  else
    local line = (line1 or vim.api.nvim_win_get_cursor(0)[1]) - 1
    args.position = { line = line, character = 0 }
  end
  M.execute("kenning.similar", args, show("kenning: similar to " .. vim.fn.expand("%:.") .. ":" .. (line1 or "")))
end

function M.setup(opts)
  M.config = vim.tbl_deep_extend("force", M.config, opts or {})
  local group = vim.api.nvim_create_augroup("kenning", { clear = true })
  if M.config.autostart ~= false then
    vim.api.nvim_create_autocmd({ "BufReadPost", "BufNewFile" }, {
      group = group,
      callback = function(ev)
        M.attach(ev.buf)
      end,
    })
  end
  vim.api.nvim_create_user_command("KenningSearch", function(c)
    M.search(c.args)
  end, { nargs = "+", desc = "kenning: semantic code search into the quickfix list" })
  vim.api.nvim_create_user_command("KenningSimilar", function(c)
    if c.range > 0 then
      M.similar(c.line1, c.line2)
    else
      M.similar()
    end
  end, { range = true, desc = "kenning: code like the chunk (or lines) here, into the quickfix list" })
  vim.api.nvim_create_user_command("KenningReindex", function()
    M.execute("kenning.reindex", {}, function(r)
      vim.notify(string.format("kenning: %d files, %d chunks (%.1fs)", r.files, r.chunks, r.took_s))
    end)
  end, { desc = "kenning: bring the index up to date" })
  vim.api.nvim_create_user_command("KenningStatus", function()
    M.execute("kenning.status", {}, function(r)
      vim.notify(string.format("kenning: %d files, %d chunks, %d to embed; model %s", r.files, r.chunks,
        r.pending, tostring(r.model)))
    end)
  end, { desc = "kenning: what the index holds" })
end

return M
