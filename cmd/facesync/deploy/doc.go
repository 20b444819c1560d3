// Package deploy holds what runs facesync outside the repository: the
// Kubernetes manifests (kubernetes/, a kustomize base) and the test that
// runs the asynqmon the local stack (docker-compose.yml) ships against
// asynq v0.26 data. The manifests themselves are checked by
// cmd/facesync/kubernetes_test.go, against facesync's own configuration
// parser.
package deploy
