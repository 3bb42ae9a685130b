// One data role for one principal on each of some blob containers of the storage account: the
// assignment's scope is the container, so the role reaches nothing else of the account.

param storageAccountName string

@description('Containers (existing) the role is given on, each on its own.')
param containerNames array

param principalId string

@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param principalType string = 'ServicePrincipal'

@description('Built-in role definition id (roles in modules/roles.bicep).')
param roleId string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [
  for name in containerNames: {
    parent: blobService
    name: name
  }
]

resource assignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (name, i) in containerNames: {
    name: guid(containers[i].id, principalId, roleId)
    scope: containers[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: principalId
      principalType: principalType
    }
  }
]
