using Tollgate.Cli;

// One binary: the server (`tollgate serve`) and the admin commands that scripts call.
// Exit codes are a contract: 0 success, 2 bad usage, 1 any other failure, with a one-line reason on stderr.
return await TollgateCli.RunAsync(args);
