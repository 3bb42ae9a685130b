# azd postdeploy hook for Windows (azure.yaml, `windows:`): what postdeploy.sh does on Linux and
# macOS, in PowerShell (Windows PowerShell 5.1 or PowerShell 7), so no bash, WSL or Git Bash is needed.
#
# 1. Waits until the function host exposes its blobs_extension system key (it exists only once the
#    code with Event Grid blob triggers runs), then deploys infra/eventgrid.bicep, which reads the
#    key itself with listKeys and creates the BlobCreated subscriptions for preprocess and infer.
#    Idempotent: running it again updates the same two subscriptions.
# 2. Builds the trainer image in the container registry with ACR Tasks (`az acr build`, no local
#    Docker needed) unless SKIP_TRAINER_IMAGE_BUILD=true or no registry was created.
#
# azd passes the provision outputs (AZURE_RESOURCE_GROUP, FUNCTION_APP_NAME, ...) as environment
# variables. Needs: Azure CLI logged in to the same tenant/subscription as azd (`az login`).
# Native commands are checked through $LASTEXITCODE; 'Continue' keeps Windows PowerShell 5.1 from
# turning az's stderr into a terminating error. Cmdlets that must not fail say -ErrorAction Stop.
$ErrorActionPreference = 'Continue'

function Fail([string]$message) {
  [Console]::Error.WriteLine("postdeploy: $message")
  exit 1
}

foreach ($name in 'AZURE_SUBSCRIPTION_ID', 'AZURE_RESOURCE_GROUP', 'FUNCTION_APP_NAME', 'EVENTGRID_SYSTEM_TOPIC_NAME') {
  if ([string]::IsNullOrEmpty([Environment]::GetEnvironmentVariable($name))) {
    Fail "$name is not set; run 'azd provision' first (or 'azd env refresh')."
  }
}
if (-not (Get-Command az -ErrorAction SilentlyContinue)) { Fail 'the Azure CLI (az) is required.' }

$infra = Split-Path -Parent $PSScriptRoot
$root = Split-Path -Parent $infra

az account set --subscription $env:AZURE_SUBSCRIPTION_ID
if ($LASTEXITCODE -ne 0) { Fail "cannot select subscription $env:AZURE_SUBSCRIPTION_ID (az login?)" }

# ---- 1. Event Grid subscriptions -------------------------------------------------------------

$attempts = 30
if ($env:BLOBS_KEY_WAIT_ATTEMPTS) { $attempts = [int]$env:BLOBS_KEY_WAIT_ATTEMPTS }
$found = $false
Write-Host "postdeploy: waiting for the blobs_extension key of $env:FUNCTION_APP_NAME ..."
for ($i = 1; $i -le $attempts; $i++) {
  # Only checks that the key exists; its value is not printed or kept.
  $key = az functionapp keys list --resource-group $env:AZURE_RESOURCE_GROUP --name $env:FUNCTION_APP_NAME `
    --query 'systemKeys.blobs_extension' --output tsv 2>$null
  if ($LASTEXITCODE -eq 0 -and -not [string]::IsNullOrWhiteSpace("$key")) { $found = $true; break }
  Start-Sleep -Seconds 10
}
$key = $null
if (-not $found) {
  Fail ("no blobs_extension key after $attempts attempts. Is the code deployed, and do preprocess and " +
    "infer register storageBlob triggers with source: 'EventGrid'? Re-run: azd hooks run postdeploy")
}

Write-Host 'postdeploy: creating the Event Grid subscriptions (infra/eventgrid.bicep) ...'
az deployment group create `
  --resource-group $env:AZURE_RESOURCE_GROUP `
  --name 'image-triage-eventgrid' `
  --template-file (Join-Path $infra 'eventgrid.bicep') `
  --parameters "functionAppName=$env:FUNCTION_APP_NAME" "systemTopicName=$env:EVENTGRID_SYSTEM_TOPIC_NAME" `
  --only-show-errors --output none
if ($LASTEXITCODE -ne 0) { Fail 'the Event Grid deployment failed (see above).' }
Write-Host 'postdeploy: uploads/ -> preprocess and preprocessed/*.npy -> infer are subscribed.'

# ---- 2. Trainer image ----------------------------------------------------------------------

if ($env:SKIP_TRAINER_IMAGE_BUILD -eq 'true') {
  Write-Host 'postdeploy: SKIP_TRAINER_IMAGE_BUILD=true, trainer image not built.'
  exit 0
}
if ([string]::IsNullOrEmpty($env:AZURE_CONTAINER_REGISTRY_NAME)) {
  Write-Host 'postdeploy: no container registry in this deployment; build and push infra/trainer.Dockerfile yourself'
  Write-Host "  and set TRAINER_IMAGE_OVERRIDE (azd env set) before the next 'azd provision'."
  exit 0
}

$repository = 'image-triage-trainer'
if ($env:TRAINER_IMAGE_REPOSITORY) { $repository = $env:TRAINER_IMAGE_REPOSITORY }
$context = Join-Path ([IO.Path]::GetTempPath()) ("image-triage-trainer-" + [Guid]::NewGuid().ToString('N'))
New-Item -ItemType Directory -Path $context -ErrorAction Stop | Out-Null
try {
  # A small build context: what the trainer's TypeScript build needs, never node_modules or data.
  foreach ($item in 'package.json', 'package-lock.json', 'tsconfig.json', 'packages', 'src', 'functions') {
    $path = Join-Path $root $item
    if (Test-Path $path) { Copy-Item -Path $path -Destination $context -Recurse -ErrorAction Stop }
  }
  # ...and the trainer's own lockfile (the runtime dependencies with the GPU binding).
  $trainerDeps = Join-Path (Join-Path $context 'infra') 'trainer'
  New-Item -ItemType Directory -Path $trainerDeps -Force -ErrorAction Stop | Out-Null
  foreach ($file in 'package.json', 'package-lock.json') {
    Copy-Item -Path (Join-Path (Join-Path $infra 'trainer') $file) -Destination $trainerDeps -ErrorAction Stop
  }
  Copy-Item -Path (Join-Path $infra 'trainer.Dockerfile') -Destination (Join-Path $context 'Dockerfile') -ErrorAction Stop

  Write-Host "postdeploy: building ${repository}:latest in $env:AZURE_CONTAINER_REGISTRY_NAME with ACR Tasks (takes a while) ..."
  az acr build --registry $env:AZURE_CONTAINER_REGISTRY_NAME --image "${repository}:latest" `
    --file (Join-Path $context 'Dockerfile') $context --only-show-errors --output none
  if ($LASTEXITCODE -ne 0) {
    [Console]::Error.WriteLine('postdeploy: the trainer image build failed (ACR Tasks may be disabled on this subscription).')
    [Console]::Error.WriteLine("  The functions work without it; retraining runs fail until the image exists. Retry with")
    [Console]::Error.WriteLine("  'azd hooks run postdeploy', or build elsewhere and set TRAINER_IMAGE_OVERRIDE.")
    exit 0
  }
  $registry = $env:AZURE_CONTAINER_REGISTRY_NAME
  if ($env:AZURE_CONTAINER_REGISTRY_ENDPOINT) { $registry = $env:AZURE_CONTAINER_REGISTRY_ENDPOINT }
  Write-Host "postdeploy: trainer image $registry/${repository}:latest is ready."
}
finally {
  Remove-Item -Path $context -Recurse -Force -ErrorAction SilentlyContinue
}
