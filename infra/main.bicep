// image-triage on Azure: blob-triggered Flex Consumption functions (preprocess, infer), HTTP and
// timer functions, and a serverless-GPU Container Apps job that retrains the CNN.
//
// Stage 1 (this file, `azd provision`): everything except the Event Grid subscriptions.
// Stage 2 (infra/eventgrid.bicep, run by infra/hooks/postdeploy.sh after `azd deploy`): the
// BlobCreated subscriptions to the functions' blobs-extension webhook, whose key exists only
// once the code runs.

targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; seeds every resource name.')
param environmentName string

@description('Region of every resource: one that offers both Flex Consumption and Container Apps serverless GPUs (see gpuProfilesByRegion).')
@allowed([
  'australiaeast'
  'swedencentral'
  'westus3'
  'westus'
  'westeurope'
])
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group name; empty = rg-{environmentName}.')
param resourceGroupName string = ''

@description('Optional: principal (object id) given Storage Blob Data Contributor on each pipeline container (not the host\'s or the deployment package\'s); azd passes the signed-in user.')
param principalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param principalType string = 'User'

// ---- pipeline settings (src/config.ts) ----

@allowed([
  'mnist'
  'xray'
])
param triageProfile string = 'mnist'

@minValue(16)
@maxValue(2048)
param triageXraySize int = 224

@minValue(1)
@maxValue(1073741824)
param triageMaxUploadBytes int = 67108864

@minValue(1)
@maxValue(1000000000)
param triageMaxPixels int = 50000000

@description('ML backend of the function app; empty = the fastest that loads.')
@allowed([
  ''
  'tensorflow'
  'wasm'
  'cpu'
])
param triageBackend string = ''

@description('How often an instance checks models/current.json for a newly promoted model (milliseconds).')
@minValue(0)
@maxValue(3600000)
param triageModelRefreshMs int = 2000

@description('Threads that score a batch of uploads on the wasm or cpu backend, the calling one included (1: no worker threads).')
@minValue(1)
@maxValue(16)
param triageInferThreads int = 2

@description('NCRONTAB (six fields, seconds first) of the retraining timer.')
param retrainSchedule string = '0 0 2 * * *'

@minValue(1)
@maxValue(10000000)
param retrainMinNewLabels int = 100

@description('NCRONTAB schedule of the sweep that scores images that waited for a model and re-drives uploads whose event was missed.')
param sweepSchedule string = '0 */5 * * * *'

// ---- the review page's sign-in (infra/README.md, "The review page") ----

@description('Application (client) id of the Microsoft Entra app registration reviewers sign in with. Empty: no sign-in is configured and the review page answers nobody.')
param reviewAuthClientId string = ''

@description('Tenant of that app registration (default: the tenant of this deployment).')
param reviewAuthTenantId string = tenant().tenantId

@secure()
@description('Client secret of that app registration (optional; without it the ID token flow is used).')
param reviewAuthClientSecret string = ''

// ---- network exposure of the storage account (infra/README.md, "Network exposure") ----

@description('public: storage answers any network, every request needing Entra ID (default; azd up from anywhere). firewall: storage denies every network but the function app\'s and the trainer\'s subnets of a new virtual network, Azure\'s trusted services (Event Grid dead-lettering) and storageAllowedIpRanges. private: as firewall, and the app and the trainer reach storage through private endpoints.')
@allowed([
  'public'
  'firewall'
  'private'
])
param storageNetworkAccess string = 'public'

@description('Public IP addresses or CIDR ranges, comma-separated without spaces, admitted through the storage firewall (the operator\'s machine, for uploads and the CLI); ignored when storageNetworkAccess is public.')
param storageAllowedIpRanges string = ''

// ---- function app ----

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

// ---- trainer ----

@description('Serverless GPU profile of the trainer job (each needs GPU quota in the region).')
@allowed([
  'Consumption-GPU-NC8as-T4'
  'Consumption-GPU-NC24-A100'
])
param gpuProfileType string = 'Consumption-GPU-NC8as-T4'

@description('Create a container registry for the trainer image (the post-deploy hook builds it there).')
param createContainerRegistry bool = true

@description('Trainer image; empty = {registry}/image-triage-trainer:latest.')
param trainerImage string = ''

@description('Maximum duration of one training execution in seconds.')
@minValue(60)
param trainerReplicaTimeoutSeconds int = 14400

@minValue(1)
@maxValue(365)
param softDeleteRetentionDays int = 14

// Serverless GPU profiles by region (Container Apps). Every region listed is a Flex Consumption
// region too; `location` allows only these. West US offers A100 only, West Europe T4 only: asking
// for a profile the region lacks fails the deployment with ARM naming the profile and the ones the
// region has ("The language expression property '...' doesn't exist, available properties are
// '...'"), instead of a Container Apps environment that cannot be created.
var gpuProfilesByRegion = {
  australiaeast: {
    'Consumption-GPU-NC8as-T4': 'Consumption-GPU-NC8as-T4'
    'Consumption-GPU-NC24-A100': 'Consumption-GPU-NC24-A100'
  }
  swedencentral: {
    'Consumption-GPU-NC8as-T4': 'Consumption-GPU-NC8as-T4'
    'Consumption-GPU-NC24-A100': 'Consumption-GPU-NC24-A100'
  }
  westus3: {
    'Consumption-GPU-NC8as-T4': 'Consumption-GPU-NC8as-T4'
    'Consumption-GPU-NC24-A100': 'Consumption-GPU-NC24-A100'
  }
  westus: {
    'Consumption-GPU-NC24-A100': 'Consumption-GPU-NC24-A100'
  }
  westeurope: {
    'Consumption-GPU-NC8as-T4': 'Consumption-GPU-NC8as-T4'
  }
}
var gpuProfileInRegion = gpuProfilesByRegion[location][gpuProfileType]

var storageIsRestricted = storageNetworkAccess != 'public'
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  application: 'image-triage'
}
var storageAccountName = 'st${resourceToken}'
var functionAppName = 'func-${resourceToken}'
var deploymentContainerName = 'app-package-${resourceToken}'
var trainerJobName = 'caj-train-${resourceToken}'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

module functionIdentity 'modules/identity.bicep' = {
  name: 'function-identity'
  scope: rg
  params: {
    name: 'id-func-${resourceToken}'
    location: location
    tags: tags
  }
}

module trainerIdentity 'modules/identity.bicep' = {
  name: 'trainer-identity'
  scope: rg
  params: {
    name: 'id-trainer-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
  }
}

module network 'modules/network.bicep' = if (storageIsRestricted) {
  name: 'network'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'vnet-${resourceToken}'
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    location: location
    tags: tags
    name: storageAccountName
    deploymentContainerName: deploymentContainerName
    systemTopicName: 'evgt-${storageAccountName}'
    softDeleteRetentionDays: softDeleteRetentionDays
    networkAccess: storageNetworkAccess
    allowedSubnetIds: storageIsRestricted ? [network.outputs.appSubnetId, network.outputs.trainerSubnetId] : []
    allowedIpRanges: storageIsRestricted && !empty(storageAllowedIpRanges) ? split(storageAllowedIpRanges, ',') : []
  }
}

module storagePrivateEndpoints 'modules/storagePrivateEndpoints.bicep' = if (storageNetworkAccess == 'private') {
  name: 'storage-private-endpoints'
  scope: rg
  params: {
    location: location
    tags: tags
    storageAccountName: storage.outputs.name
    vnetId: storageIsRestricted ? network.outputs.id : ''
    subnetId: storageIsRestricted ? network.outputs.privateEndpointSubnetId : ''
  }
}

module trainer 'modules/trainer.bicep' = {
  name: 'trainer'
  scope: rg
  params: {
    location: location
    tags: tags
    environmentName: 'cae-${resourceToken}'
    jobName: trainerJobName
    logAnalyticsName: monitoring.outputs.logAnalyticsName
    identityId: trainerIdentity.outputs.id
    identityClientId: trainerIdentity.outputs.clientId
    identityPrincipalId: trainerIdentity.outputs.principalId
    gpuProfileType: gpuProfileInRegion
    createContainerRegistry: createContainerRegistry
    registryName: 'cr${resourceToken}'
    trainerImage: trainerImage
    replicaTimeoutSeconds: trainerReplicaTimeoutSeconds
    storageBlobEndpoint: storage.outputs.blobEndpoint
    infrastructureSubnetId: storageIsRestricted ? network.outputs.trainerSubnetId : ''
    triageProfile: triageProfile
    triageXraySize: triageXraySize
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    location: location
    tags: tags
    planName: 'plan-${resourceToken}'
    appName: functionAppName
    identityId: functionIdentity.outputs.id
    identityClientId: functionIdentity.outputs.clientId
    storageBlobEndpoint: storage.outputs.blobEndpoint
    storageQueueEndpoint: storage.outputs.queueEndpoint
    deploymentContainerName: deploymentContainerName
    virtualNetworkSubnetId: storageIsRestricted ? network.outputs.appSubnetId : ''
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    triageProfile: triageProfile
    triageXraySize: triageXraySize
    triageMaxUploadBytes: triageMaxUploadBytes
    triageMaxPixels: triageMaxPixels
    triageBackend: triageBackend
    triageModelRefreshMs: triageModelRefreshMs
    triageInferThreads: triageInferThreads
    retrainSchedule: retrainSchedule
    retrainMinNewLabels: retrainMinNewLabels
    sweepSchedule: sweepSchedule
    reviewAuth: empty(reviewAuthClientId) ? 'off' : 'app-service'
    reviewAuthClientId: reviewAuthClientId
    reviewAuthTenantId: reviewAuthTenantId
    reviewAuthClientSecret: reviewAuthClientSecret
    trainerJobName: trainer.outputs.jobName
    trainerJobResourceGroup: rg.name
    trainerImage: trainer.outputs.image
    trainerCpu: trainer.outputs.cpu
    trainerMemory: trainer.outputs.memory
    trainerClientId: trainerIdentity.outputs.clientId
  }
}

module roles 'modules/roles.bicep' = {
  name: 'roles'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    trainerJobName: trainer.outputs.jobName
    functionPrincipalId: functionIdentity.outputs.principalId
    trainerPrincipalId: trainerIdentity.outputs.principalId
    eventGridPrincipalId: storage.outputs.systemTopicPrincipalId
    deadLetterContainerName: storage.outputs.deadLetterContainerName
    pipelineContainerNames: storage.outputs.containerNames
    hostContainerNames: storage.outputs.hostContainerNames
    deploymentContainerName: storage.outputs.deploymentContainerName
    operatorPrincipalId: principalId
    operatorPrincipalType: principalType
  }
}

// Outputs become azd environment values (azd env get-values) and reach the post-deploy hook.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_SUBSCRIPTION_ID string = subscription().subscriptionId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_BLOB_ENDPOINT string = storage.outputs.blobEndpoint
output STORAGE_NETWORK_ACCESS string = storageNetworkAccess
output FUNCTION_APP_NAME string = functionApp.outputs.name
output FUNCTION_APP_URL string = 'https://${functionApp.outputs.defaultHostName}'
output FUNCTION_IDENTITY_CLIENT_ID string = functionIdentity.outputs.clientId
output EVENTGRID_SYSTEM_TOPIC_NAME string = storage.outputs.systemTopicName
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output CONTAINER_APPS_ENVIRONMENT_NAME string = trainer.outputs.environmentName
output TRAINER_JOB_NAME string = trainer.outputs.jobName
output TRAINER_IMAGE string = trainer.outputs.image
output TRAINER_IMAGE_REPOSITORY string = trainer.outputs.imageRepository
output TRAINER_IDENTITY_CLIENT_ID string = trainerIdentity.outputs.clientId
output TRAINER_GPU_PROFILE string = gpuProfileInRegion
output AZURE_CONTAINER_REGISTRY_NAME string = trainer.outputs.registryName
output AZURE_CONTAINER_REGISTRY_ENDPOINT string = trainer.outputs.registryLoginServer
