// The retraining side: a workload-profiles Container Apps environment with a serverless GPU
// profile, a Manual-trigger job that runs the trainer image on it, and (optionally) a private
// container registry the job pulls from with its own identity.
//
// Container Apps validates a job's image when the job is created, and the trainer image exists only
// once the post-deploy hook has built it. So the job is created with a public placeholder image,
// after its identity holds AcrPull on the registry; every start (src/jobs/launchers.ts) sends the
// whole template with the real image (output `image`, app setting TRAINER_IMAGE).

param location string
param tags object = {}
param environmentName string
param jobName string
param logAnalyticsName string

@description('Resource id of the user-assigned identity the job runs as (storage access, image pulls).')
param identityId string

@description('Client id of that identity.')
param identityClientId string

@description('Principal (object) id of that identity: it gets AcrPull on the registry before the job exists.')
param identityPrincipalId string

@description('Serverless GPU workload profile type of the environment.')
@allowed([
  'Consumption-GPU-NC8as-T4'
  'Consumption-GPU-NC24-A100'
])
param gpuProfileType string = 'Consumption-GPU-NC8as-T4'

@description('Create a Basic container registry for the trainer image.')
param createContainerRegistry bool = true

@description('Name of the registry (used when createContainerRegistry is true).')
param registryName string

@description('Repository of the trainer image in the registry.')
param imageRepository string = 'image-triage-trainer'

@description('Full trainer image reference each start sends; empty = {registry}/{imageRepository}:latest (or the placeholder without a registry).')
param trainerImage string = ''

@description('Maximum run time of one training execution, in seconds.')
@minValue(60)
param replicaTimeoutSeconds int = 14400

@description('Retries of a failed execution replica (training is not cheap: default none).')
@minValue(0)
@maxValue(10)
param replicaRetryLimit int = 0

param storageBlobEndpoint string

@description('Subnet (delegated to Microsoft.App/environments, /27 or larger) the environment runs in; empty: Azure-managed network (storage is public). Changing it recreates the environment.')
param infrastructureSubnetId string = ''
param triageProfile string
param triageXraySize int

// Name of the GPU profile inside the environment; jobs pin to it by this name.
var gpuProfileName = 'gpu'

// A replica gets the whole GPU node of the serverless profile.
var gpuResources = {
  'Consumption-GPU-NC8as-T4': {
    cpu: 8
    memory: '56Gi'
  }
  'Consumption-GPU-NC24-A100': {
    cpu: 24
    memory: '220Gi'
  }
}
var cpu = gpuResources[gpuProfileType].cpu
var memory = gpuResources[gpuProfileType].memory

var loginServer = '${registryName}${environment().suffixes.acrLoginServer}'
// Public, pullable without credentials: what the job is created with. Never runs a training.
var placeholderImage = 'mcr.microsoft.com/k8se/quickstart-jobs:latest'
// What every execution runs (the launcher repeats it in each start's template).
var image = !empty(trainerImage)
  ? trainerImage
  : (createContainerRegistry ? '${loginServer}/${imageRepository}:latest' : placeholderImage)

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: logAnalyticsName
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = if (createContainerRegistry) {
  name: registryName
  location: location
  tags: tags
  sku: {
    name: 'Basic'
  }
  properties: {
    adminUserEnabled: false
    anonymousPullEnabled: false
    publicNetworkAccess: 'Enabled'
  }
}

// AcrPull for the job's identity, granted before the job is created (the job dependsOn it), so the
// first start that sends the real image can pull it.
var acrPullRoleId = '7f951dda-4ed3-4680-a7ca-43fe172d538d' // AcrPull

resource jobAcrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (createContainerRegistry) {
  name: guid(registry.id, identityPrincipalId, acrPullRoleId)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPullRoleId)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource containerEnvironment 'Microsoft.App/managedEnvironments@2025-01-01' = {
  name: environmentName
  location: location
  tags: tags
  properties: {
    // Logs go through Azure Monitor (the diagnostic setting below), so neither the deployment nor
    // the environment ever holds the workspace's shared key.
    appLogsConfiguration: {
      destination: 'azure-monitor'
    }
    // In the deployment's network when storage admits only its subnets; no ingress either way (a job).
    vnetConfiguration: empty(infrastructureSubnetId)
      ? null
      : {
          infrastructureSubnetId: infrastructureSubnetId
          internal: false
        }
    // A GPU profile can be added to an existing environment in most regions; changing the type of
    // this one (the job is pinned to it by name) may need the environment recreated
    // (infra/README.md, "GPU profile and quota").
    workloadProfiles: [
      {
        name: 'Consumption'
        workloadProfileType: 'Consumption'
      }
      {
        name: gpuProfileName
        workloadProfileType: gpuProfileType
      }
    ]
    zoneRedundant: false
  }
}

// The environment's console and system logs (the trainer's output among them) in the workspace's
// ContainerAppConsoleLogs and ContainerAppSystemLogs tables.
resource environmentLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'logs-to-log-analytics'
  scope: containerEnvironment
  properties: {
    workspaceId: workspace.id
    logAnalyticsDestinationType: 'Dedicated'
    logs: [
      {
        category: 'ContainerAppConsoleLogs'
        enabled: true
      }
      {
        category: 'ContainerAppSystemLogs'
        enabled: true
      }
    ]
  }
}

resource job 'Microsoft.App/jobs@2025-01-01' = {
  name: jobName
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    environmentId: containerEnvironment.id
    workloadProfileName: gpuProfileName
    configuration: {
      triggerType: 'Manual'
      manualTriggerConfig: {
        parallelism: 1
        replicaCompletionCount: 1
      }
      replicaTimeout: replicaTimeoutSeconds
      replicaRetryLimit: replicaRetryLimit
      registries: createContainerRegistry
        ? [
            {
              server: loginServer
              identity: identityId
            }
          ]
        : []
    }
    template: {
      containers: [
        {
          name: 'trainer'
          // The placeholder: the trainer image does not exist yet when the job is created.
          image: placeholderImage
          resources: {
            cpu: cpu
            memory: memory
          }
          // The function's launcher starts each execution with this template plus RUN_ID; a start
          // with a template replaces all of it, so the launcher repeats these values (app settings
          // TRAINER_IMAGE, TRAINER_CPU, TRAINER_MEMORY, TRAINER_CLIENT_ID).
          env: [
            {
              name: 'AzureWebJobsStorage__blobServiceUri'
              value: storageBlobEndpoint
            }
            {
              name: 'AzureWebJobsStorage__credential'
              value: 'managedidentity'
            }
            {
              name: 'AzureWebJobsStorage__clientId'
              value: identityClientId
            }
            {
              name: 'AZURE_CLIENT_ID'
              value: identityClientId
            }
            {
              name: 'TRIAGE_BACKEND'
              value: 'tensorflow'
            }
            {
              name: 'TRIAGE_PROFILE'
              value: triageProfile
            }
            {
              name: 'TRIAGE_XRAY_SIZE'
              value: string(triageXraySize)
            }
            {
              // Set per execution by the launcher; empty when started by hand (the trainer makes one).
              name: 'RUN_ID'
              value: ''
            }
          ]
        }
      ]
    }
  }
  dependsOn: [
    registry
    jobAcrPull
  ]
}

output environmentName string = containerEnvironment.name
output environmentId string = containerEnvironment.id
output jobName string = job.name
output jobId string = job.id
output image string = image
output placeholderImage string = placeholderImage
output imageRepository string = imageRepository
output cpu string = string(cpu)
output memory string = memory
output registryName string = createContainerRegistry ? registryName : ''
output registryLoginServer string = createContainerRegistry ? loginServer : ''
output gpuProfileName string = gpuProfileName
