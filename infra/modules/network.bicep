// The virtual network of a deployment whose storage is not public (main.bicep, storageNetworkAccess
// 'firewall' or 'private'): one subnet the function app is integrated with, one the trainer's
// Container Apps environment runs in, and one for the storage account's private endpoints.
// The app and trainer subnets carry the Microsoft.Storage service endpoint, so the storage
// firewall can admit exactly these two subnets.

param location string
param tags object = {}
param name string

@description('Address space of the network; the three subnets are carved from its first /16.')
param addressPrefix string = '10.40.0.0/16'

var appSubnetName = 'function-app'
var trainerSubnetName = 'trainer'
var privateEndpointSubnetName = 'private-endpoints'

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        // Flex Consumption virtual network integration: delegated to Microsoft.App/environments.
        name: appSubnetName
        properties: {
          addressPrefix: cidrSubnet(addressPrefix, 24, 1)
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
          serviceEndpoints: [
            {
              service: 'Microsoft.Storage'
            }
          ]
        }
      }
      {
        // The workload-profiles Container Apps environment (at least a /27; a /23 leaves room).
        name: trainerSubnetName
        properties: {
          addressPrefix: cidrSubnet(addressPrefix, 23, 1)
          delegations: [
            {
              name: 'container-apps'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
          serviceEndpoints: [
            {
              service: 'Microsoft.Storage'
            }
          ]
        }
      }
      {
        name: privateEndpointSubnetName
        properties: {
          addressPrefix: cidrSubnet(addressPrefix, 24, 4)
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }

  resource appSubnet 'subnets' existing = {
    name: appSubnetName
  }

  resource trainerSubnet 'subnets' existing = {
    name: trainerSubnetName
  }

  resource privateEndpointSubnet 'subnets' existing = {
    name: privateEndpointSubnetName
  }
}

output id string = vnet.id
output appSubnetId string = vnet::appSubnet.id
output trainerSubnetId string = vnet::trainerSubnet.id
output privateEndpointSubnetId string = vnet::privateEndpointSubnet.id
