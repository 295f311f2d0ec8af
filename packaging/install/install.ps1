# Install the codex-gateway binary on Windows x64, no Rust toolchain and no administrator rights:
#
#   irm https://github.com/codex-gateway/codex-gateway/releases/latest/download/install.ps1 | iex
#   powershell -ExecutionPolicy Bypass -File install.ps1 [-Version vX.Y.Z]
#   & ([scriptblock]::Create((irm <url of install.ps1>))) -Version vX.Y.Z
#
# It downloads codex-gateway-x86_64-pc-windows-msvc.zip and SHA256SUMS from the release, refuses to
# go on unless the archive's SHA-256 matches its line in SHA256SUMS, puts codex-gateway.exe into the
# install folder (replacing an older one in a single rename) and adds that folder to the user's PATH.
#
# Environment:
#   CODEX_GATEWAY_INSTALL_DIR   where the binary goes (default: %LOCALAPPDATA%\Programs\codex-gateway\bin)
#   CODEX_GATEWAY_DOWNLOAD_URL  the folder holding the archives and SHA256SUMS (default: the latest
#                               GitHub release; -Version picks another release of the default)
#
# Windows PowerShell 5.1 or PowerShell 7. Failures throw (so `irm | iex` does not close the window;
# `-File` runs exit with 1) and install nothing.
param(
    [string]$Version = ''
)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'  # the progress bar makes Invoke-WebRequest many times slower on 5.1

function Install-CodexGateway {
    param([string]$Version)

    $repoUrl = 'https://github.com/codex-gateway/codex-gateway'
    $target = 'x86_64-pc-windows-msvc'
    $archive = "codex-gateway-$target.zip"

    $arch = $env:PROCESSOR_ARCHITEW6432
    if (-not $arch) { $arch = $env:PROCESSOR_ARCHITECTURE }
    if ($arch -eq 'ARM64') {
        Write-Host 'Note: no Windows ARM64 build yet; installing the x64 one, which Windows 11 on ARM runs emulated.'
    } elseif ($arch -ne 'AMD64') {
        throw "codex-gateway install: no prebuilt binary for the $arch processor; build from source: $repoUrl"
    }

    if ($Version -and -not $Version.StartsWith('v')) { $Version = "v$Version" }
    if ($env:CODEX_GATEWAY_DOWNLOAD_URL) {
        $base = $env:CODEX_GATEWAY_DOWNLOAD_URL.TrimEnd('/')
        if ($Version) { Write-Warning "CODEX_GATEWAY_DOWNLOAD_URL is set, so -Version $Version is not used" }
    } elseif ($Version) {
        $base = "$repoUrl/releases/download/$Version"
    } else {
        $base = "$repoUrl/releases/latest/download"
    }
    if ($env:CODEX_GATEWAY_INSTALL_DIR) {
        $installDir = $env:CODEX_GATEWAY_INSTALL_DIR
    } else {
        $installDir = Join-Path $env:LOCALAPPDATA 'Programs\codex-gateway\bin'
    }

    # Windows PowerShell 5.1 may not offer TLS 1.2 by default; GitHub needs it.
    try {
        [Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12
    } catch { }

    $tmp = Join-Path ([IO.Path]::GetTempPath()) ("codex-gateway-install-" + [Guid]::NewGuid().ToString('N'))
    New-Item -ItemType Directory -Path $tmp | Out-Null
    $staged = $null
    try {
        Write-Host "Downloading $archive from $base"
        $archivePath = Join-Path $tmp $archive
        $sumsPath = Join-Path $tmp 'SHA256SUMS'
        try {
            Invoke-WebRequest -UseBasicParsing -Uri "$base/$archive" -OutFile $archivePath
            Invoke-WebRequest -UseBasicParsing -Uri "$base/SHA256SUMS" -OutFile $sumsPath
        } catch {
            throw "codex-gateway install: could not download from ${base}: $($_.Exception.Message)"
        }

        # The archive's line: "<64 hex>  <name>" as sha256sum writes it ("*<name>" in binary mode, "./<name>" too).
        $expected = @()
        foreach ($line in Get-Content -LiteralPath $sumsPath) {
            $fields = $line.Trim() -split '\s+', 2
            if ($fields.Count -ne 2) { continue }
            $name = $fields[1]
            if ($name.StartsWith('*')) { $name = $name.Substring(1) }
            if ($name.StartsWith('./')) { $name = $name.Substring(2) }
            if ($name -eq $archive) { $expected += $fields[0].ToLowerInvariant() }
        }
        if ($expected.Count -eq 0) {
            throw "codex-gateway install: SHA256SUMS has no entry for ${archive}: refusing to install an unchecked download (nothing was installed)"
        }
        if ($expected.Count -ne 1 -or $expected[0] -notmatch '^[0-9a-f]{64}$') {
            throw "codex-gateway install: SHA256SUMS has a malformed or repeated entry for ${archive}: refusing to install (nothing was installed)"
        }
        $actual = (Get-FileHash -LiteralPath $archivePath -Algorithm SHA256).Hash.ToLowerInvariant()
        if ($actual -ne $expected[0]) {
            throw "codex-gateway install: checksum mismatch for $archive (expected $($expected[0]), got $actual): the download is damaged or not the released file; nothing was installed"
        }
        Write-Host "Checksum verified (sha256 $actual)"

        $unpacked = Join-Path $tmp 'x'
        Expand-Archive -LiteralPath $archivePath -DestinationPath $unpacked
        $binary = Join-Path $unpacked "codex-gateway-$target\codex-gateway.exe"
        if (-not (Test-Path -LiteralPath $binary -PathType Leaf)) {
            throw "codex-gateway install: $archive has no codex-gateway-$target\codex-gateway.exe"
        }

        New-Item -ItemType Directory -Force -Path $installDir | Out-Null
        $staged = Join-Path $installDir (".codex-gateway.tmp.$PID.exe")
        Copy-Item -LiteralPath $binary -Destination $staged -Force
        # Native stderr under 'Stop' would throw on 5.1 before the exit code is known: relax it here.
        $previous = $ErrorActionPreference
        $ErrorActionPreference = 'Continue'
        try {
            $output = @(& $staged --version 2>&1)
            $code = $LASTEXITCODE
        } catch {
            $output = @($_.Exception.Message)
            $code = -1
        } finally {
            $ErrorActionPreference = $previous
        }
        $installedVersion = "$($output | Select-Object -First 1)".Trim()
        if ($code -ne 0) {
            throw "codex-gateway install: the downloaded binary does not run on this machine ($installedVersion); nothing was installed"
        }
        $dest = Join-Path $installDir 'codex-gateway.exe'
        try {
            Move-Item -LiteralPath $staged -Destination $dest -Force
        } catch {
            throw "codex-gateway install: cannot replace $dest (is codex-gateway running? stop it with 'codex-gateway stop'): $($_.Exception.Message)"
        }
        $staged = $null
        Write-Host "Installed $installedVersion to $dest"
    } finally {
        if ($staged -and (Test-Path -LiteralPath $staged)) { Remove-Item -LiteralPath $staged -Force }
        Remove-Item -LiteralPath $tmp -Recurse -Force -ErrorAction SilentlyContinue
    }

    # The user PATH (no administrator rights needed); this session's PATH too, so the command works at once.
    $normalized = $installDir.TrimEnd('\')
    $userPath = [Environment]::GetEnvironmentVariable('Path', 'User')
    $entries = @()
    if ($userPath) { $entries = $userPath -split ';' | Where-Object { $_ } }
    $onUserPath = $entries | Where-Object { $_.TrimEnd('\') -ieq $normalized }
    if ($onUserPath) {
        Write-Host "$installDir is on your PATH."
    } else {
        [Environment]::SetEnvironmentVariable('Path', (@($entries) + $installDir) -join ';', 'User')
        Write-Host "Added $installDir to your user PATH (new terminals will see it)."
    }
    $sessionEntries = $env:Path -split ';' | Where-Object { $_ -and $_.TrimEnd('\') -ieq $normalized }
    if (-not $sessionEntries) { $env:Path = "$env:Path;$installDir" }

    Write-Host ''
    Write-Host 'Next, start the gateway (it serves http://127.0.0.1:8765):'
    Write-Host '    codex-gateway serve'
    Write-Host 'then point a client at it (claude-code, codex, gemini, opencode, aider or continue):'
    Write-Host '    codex-gateway connect claude-code'
}

Install-CodexGateway -Version $Version
