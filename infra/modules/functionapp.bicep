// Flex Consumption function app (Linux, Node 22) running as a user-assigned identity.
// Storage, deployment package and Application Insights are all reached with that identity:
// no connection string or key appears in the app settings.

param location string
param tags object = {}
param planName string
param appName string

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of that identity.')
param identityClientId string

param storageBlobEndpoint string
param storageQueueEndpoint string
param deploymentContainerName string
param applicationInsightsConnectionString string

@description('Subnet (delegated to Microsoft.App/environments) the app is integrated with; empty: none (storage is public).')
param virtualNetworkSubnetId string = ''

@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

// Settings of src/config.ts
param triageProfile string
param triageXraySize int
param triageMaxUploadBytes int
param triageMaxPixels int
param triageBackend string
param triageModelRefreshMs int
param triageInferThreads int
param retrainSchedule string
param retrainMinNewLabels int
param sweepSchedule string

// The review page's sign-in (App Service Authentication with Microsoft Entra ID; see infra/README.md)
@description('app-service: the review page answers signed-in reviewers only; off: it answers nobody (no app registration given).')
@allowed([
  'app-service'
  'off'
])
param reviewAuth string

@description('Application (client) id of the Entra app registration reviewers sign in with (used when reviewAuth is app-service).')
param reviewAuthClientId string = ''

@description('Tenant of that app registration.')
param reviewAuthTenantId string = tenant().tenantId

@secure()
@description('Client secret of that app registration; empty: sign-in uses the ID token flow (enable ID tokens on the registration).')
param reviewAuthClientSecret string = ''

// Settings the retrain function uses to start the trainer job
param trainerJobName string
param trainerJobResourceGroup string
param trainerImage string
param trainerCpu string
param trainerMemory string
param trainerClientId string

var appSettings = {
  // Identity-based host storage and trigger connection (prefix AzureWebJobsStorage, src/config.ts).
  AzureWebJobsStorage__blobServiceUri: storageBlobEndpoint
  AzureWebJobsStorage__queueServiceUri: storageQueueEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  // DefaultAzureCredential / ManagedIdentityCredential in the code pick the user-assigned identity from here.
  AZURE_CLIENT_ID: identityClientId
  // Application Insights with Entra authentication (the component has local auth disabled).
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  // Pipeline settings (src/config.ts SETTINGS).
  TRIAGE_PROFILE: triageProfile
  TRIAGE_REVIEW_AUTH: reviewAuth
  // Read by App Service Authentication (clientSecretSettingName below); empty without a secret.
  MICROSOFT_PROVIDER_AUTHENTICATION_SECRET: reviewAuthClientSecret
  TRIAGE_XRAY_SIZE: string(triageXraySize)
  TRIAGE_MAX_UPLOAD_BYTES: string(triageMaxUploadBytes)
  TRIAGE_MAX_PIXELS: string(triageMaxPixels)
  TRIAGE_BACKEND: triageBackend
  TRIAGE_MODEL_REFRESH_MS: string(triageModelRefreshMs)
  TRIAGE_INFER_THREADS: string(triageInferThreads)
  RETRAIN_SCHEDULE: retrainSchedule
  RETRAIN_MIN_NEW_LABELS: string(retrainMinNewLabels)
  SWEEP_SCHEDULE: sweepSchedule
  // Trainer job (Container Apps, serverless GPU). Starting an execution with a template replaces the
  // whole template, so the launcher needs the image, resources and the job identity's client id too.
  AZURE_SUBSCRIPTION_ID: subscription().subscriptionId
  TRAINER_JOB_NAME: trainerJobName
  TRAINER_JOB_RESOURCE_GROUP: trainerJobResourceGroup
  TRAINER_IMAGE: trainerImage
  TRAINER_CPU: trainerCpu
  TRAINER_MEMORY: trainerMemory
  TRAINER_CLIENT_ID: trainerClientId
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  // azd finds the app to deploy service `api` to by this tag.
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Outbound through the network when storage admits only its subnets (main.bicep, storageNetworkAccess).
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    // Flex Consumption rejects siteConfig.ftpsState (ARM 400, extended code 51021); FTP and SCM
    // basic credentials are turned off by the policies below. TLS 1.2 is what it takes here.
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'node'
        // Node 20's Functions support ended April 2026; Flex Consumption runs Node 22.
        version: '22'
      }
    }
  }

  resource settings 'config' = {
    name: 'appsettings'
    properties: appSettings
  }

  // No user name and password publishing (basic authentication) on the FTP or the SCM (Kudu)
  // endpoint: azd and the Azure CLI deploy with an Entra token, which these policies leave alone.
  resource ftpBasicAuth 'basicPublishingCredentialsPolicies' = {
    name: 'ftp'
    properties: {
      allow: false
    }
  }

  resource scmBasicAuth 'basicPublishingCredentialsPolicies' = {
    name: 'scm'
    properties: {
      allow: false
    }
  }

  // Sign-in for the review page. Anonymous requests still reach the app (Event Grid's webhook and
  // the function-key API must keep working): the page itself refuses requests without a principal,
  // and the platform strips x-ms-client-principal-* headers that a client sends.
  resource auth 'config' = if (reviewAuth == 'app-service') {
    name: 'authsettingsV2'
    properties: {
      platform: {
        enabled: true
      }
      globalValidation: {
        requireAuthentication: false
        unauthenticatedClientAction: 'AllowAnonymous'
      }
      httpSettings: {
        requireHttps: true
      }
      login: {
        tokenStore: {
          enabled: false
        }
      }
      identityProviders: {
        azureActiveDirectory: {
          enabled: true
          registration: {
            clientId: reviewAuthClientId
            openIdIssuer: '${environment().authentication.loginEndpoint}${reviewAuthTenantId}/v2.0'
            clientSecretSettingName: empty(reviewAuthClientSecret) ? null : 'MICROSOFT_PROVIDER_AUTHENTICATION_SECRET'
          }
        }
      }
    }
  }
}

output name string = app.name
output id string = app.id
output defaultHostName string = app.properties.defaultHostName
