#!/bin/sh
# azd postdeploy hook (azure.yaml): runs after `azd deploy` / `azd up` has deployed the function code.
#
# 1. Waits until the function host exposes its blobs_extension system key (it exists only once the
#    code with Event Grid blob triggers runs), then deploys infra/eventgrid.bicep, which reads the
#    key itself with listKeys and creates the BlobCreated subscriptions for preprocess and infer.
#    Idempotent: running it again updates the same two subscriptions.
# 2. Builds the trainer image in the container registry with ACR Tasks (`az acr build`, no local
#    Docker needed) unless SKIP_TRAINER_IMAGE_BUILD=true or no registry was created.
#
# azd exports the provision outputs (AZURE_RESOURCE_GROUP, FUNCTION_APP_NAME, ...) to this script.
# Needs: Azure CLI logged in to the same tenant/subscription as azd (`az login`).
set -eu

require() {
  eval "value=\${$1:-}"
  if [ -z "$value" ]; then
    echo "postdeploy: $1 is not set; run 'azd provision' first (or 'azd env refresh')." >&2
    exit 1
  fi
}
for name in AZURE_SUBSCRIPTION_ID AZURE_RESOURCE_GROUP FUNCTION_APP_NAME EVENTGRID_SYSTEM_TOPIC_NAME; do
  require "$name"
done

command -v az >/dev/null 2>&1 || { echo "postdeploy: the Azure CLI (az) is required." >&2; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
infra=$(cd "$here/.." && pwd)
root=$(cd "$infra/.." && pwd)

az account set --subscription "$AZURE_SUBSCRIPTION_ID"

# ---- 1. Event Grid subscriptions -------------------------------------------------------------

attempts=${BLOBS_KEY_WAIT_ATTEMPTS:-30}
i=1
found=""
echo "postdeploy: waiting for the blobs_extension key of $FUNCTION_APP_NAME ..."
while [ "$i" -le "$attempts" ]; do
  # Only checks that the key exists; its value is not printed or kept.
  if az functionapp keys list --resource-group "$AZURE_RESOURCE_GROUP" --name "$FUNCTION_APP_NAME" \
      --query "systemKeys.blobs_extension" --output tsv 2>/dev/null | grep -q .; then
    found=yes
    break
  fi
  i=$((i + 1))
  sleep 10
done
if [ -z "$found" ]; then
  echo "postdeploy: no blobs_extension key after $attempts attempts. Is the code deployed, and do" >&2
  echo "  preprocess and infer register storageBlob triggers with source: 'EventGrid'? Re-run:" >&2
  echo "  azd hooks run postdeploy" >&2
  exit 1
fi

echo "postdeploy: creating the Event Grid subscriptions (infra/eventgrid.bicep) ..."
az deployment group create \
  --resource-group "$AZURE_RESOURCE_GROUP" \
  --name "image-triage-eventgrid" \
  --template-file "$infra/eventgrid.bicep" \
  --parameters functionAppName="$FUNCTION_APP_NAME" systemTopicName="$EVENTGRID_SYSTEM_TOPIC_NAME" \
  --only-show-errors --output none
echo "postdeploy: uploads/ -> preprocess and preprocessed/*.npy -> infer are subscribed."

# ---- 2. Trainer image ----------------------------------------------------------------------

if [ "${SKIP_TRAINER_IMAGE_BUILD:-false}" = "true" ]; then
  echo "postdeploy: SKIP_TRAINER_IMAGE_BUILD=true, trainer image not built."
  exit 0
fi
if [ -z "${AZURE_CONTAINER_REGISTRY_NAME:-}" ]; then
  echo "postdeploy: no container registry in this deployment; build and push infra/trainer.Dockerfile yourself"
  echo "  and set TRAINER_IMAGE_OVERRIDE (azd env set) before the next 'azd provision'."
  exit 0
fi

repository=${TRAINER_IMAGE_REPOSITORY:-image-triage-trainer}
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT INT TERM
# A small build context: what the trainer's TypeScript build needs, never node_modules or data.
for item in package.json package-lock.json tsconfig.json packages src functions; do
  if [ -e "$root/$item" ]; then cp -R "$root/$item" "$context/"; fi
done
# ...and the trainer's own lockfile (the runtime dependencies with the GPU binding).
mkdir -p "$context/infra/trainer"
cp "$infra/trainer/package.json" "$infra/trainer/package-lock.json" "$context/infra/trainer/"
cp "$infra/trainer.Dockerfile" "$context/Dockerfile"

echo "postdeploy: building $repository:latest in $AZURE_CONTAINER_REGISTRY_NAME with ACR Tasks (takes a while) ..."
if ! az acr build --registry "$AZURE_CONTAINER_REGISTRY_NAME" --image "$repository:latest" \
    --file "$context/Dockerfile" "$context" --only-show-errors --output none; then
  echo "postdeploy: the trainer image build failed (ACR Tasks may be disabled on this subscription)." >&2
  echo "  The functions work without it; retraining runs fail until the image exists. Retry with" >&2
  echo "  'azd hooks run postdeploy', or build elsewhere and set TRAINER_IMAGE_OVERRIDE." >&2
  exit 0
fi
echo "postdeploy: trainer image ${AZURE_CONTAINER_REGISTRY_ENDPOINT:-$AZURE_CONTAINER_REGISTRY_NAME}/$repository:latest is ready."
