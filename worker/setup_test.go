package worker_test

import "github.com/facesync/facesync/worker/workertest"

// The app of every test's environment (workertest.New).
const (
	appID  = workertest.AppID
	secret = workertest.Secret
)
