module asynqmontest

go 1.16

require (
	github.com/hibiken/asynq v0.24.1
	github.com/hibiken/asynqmon v0.7.2
)
